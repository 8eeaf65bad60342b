"""``neurosim snn`` verbs: nir-info, nir-repair, crosscheck; bad input is one line + exit 2."""

import json

import norse.torch as norse
import numpy as np
import torch

from neurosim.cli import main
from neurosim.snn import layers as L
from neurosim.snn.neurons import LIF
from neurosim.snn.nir_io import load_graph, save_nir
from neurosim.snn.sequential import Sequential


def test_nir_info_reports_time_constants(tmp_path, capsys):
    path = save_nir(Sequential(L.Linear(4, 3), LIF(tau_mem_inv=50.0)), tmp_path / "n.nir", (4,))
    assert main(["snn", "nir-info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cuba = next(n for n in doc["nodes"] if n["type"] == "CubaLIF")
    assert abs(cuba["tau_mem"] - 0.02) < 1e-12 and abs(cuba["tau_syn"] - 0.005) < 1e-12


def test_repaired_norse_export_can_be_written_and_inspected(tmp_path, capsys):
    import nir

    from neurosim.snn.nir_io import repair_norse_export

    model = norse.SequentialState(torch.nn.Linear(4, 3), norse.LIFBoxCell())
    out = tmp_path / "fixed.nir"
    nir.write(str(out), repair_norse_export(norse.to_nir(model, torch.zeros(1, 4))))
    assert main(["snn", "nir-info", str(out), "--json"]) == 0
    lif = next(n for n in json.loads(capsys.readouterr().out)["nodes"] if n["type"] == "LIF")
    assert abs(lif["tau"] - 0.01) < 1e-8


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    assert main(["snn", "nir-info", str(bad)]) == 2
    assert main(["snn", "nir-info", str(tmp_path / "missing.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("neurosim: error:") for line in err)
    assert main(["snn", "crosscheck", "--neurons", "0"]) == 2


def test_crosscheck_small(capsys):
    assert main(["snn", "crosscheck", "--neurons", "50", "--steps", "100", "--no-synaptic", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["spike_mismatches"] == 0 and doc["spikes_brian2"] > 0
