"""relatlas: server."""
