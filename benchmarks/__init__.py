"""relatlas: benchmarks."""
