"""benchmarks_data package of neurosim (see DESIGN.md): event datasets.

- :mod:`benchmarks_data.layouts` — find NFS / OTB / VOT / video sequences and their boxes;
- :mod:`benchmarks_data.build` — ``build_dataset``: resumable, parallel (processes or Dask) builds;
- :mod:`benchmarks_data.synth` — the procedural high-speed tracking benchmark;
- :mod:`benchmarks_data.index` — ``index.json`` and splits;
- :mod:`benchmarks_data.loaders` — ``TrackingWindows``, the torch Dataset;
- :mod:`benchmarks_data.recordings` — jAER AEDAT 2.0/3.1, box files, import of real recordings;
- :mod:`benchmarks_data.info`, :mod:`benchmarks_data.cli`, :mod:`benchmarks_data.demo`.
"""
