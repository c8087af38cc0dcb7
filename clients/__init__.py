"""relatlas: clients."""
