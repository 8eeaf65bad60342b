"""sim_events package of neurosim (see DESIGN.md)."""
