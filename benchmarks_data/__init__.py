"""benchmarks_data package of neurosim (see DESIGN.md)."""
