"""neurosim: hybrid ANN-SNN neuromorphic simulation toolkit.

Top-level packages of the one distribution (see docs/explanation/design.md):
``neurosim`` (spiking core, int8 quantization, shared helpers, CLI shell),
``sim_events`` (video to DVS events), ``benchmarks_data`` (datasets),
``hybrid`` (DashNet-style trackers) and ``chip_models`` (neuromorphic chip estimates).
"""

__version__ = "0.1.0"
