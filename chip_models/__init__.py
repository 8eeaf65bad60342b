"""chip_models package of neurosim (see DESIGN.md)."""
