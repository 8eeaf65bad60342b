"""hybrid package of neurosim (see DESIGN.md)."""
