"""``neurosim chip estimate | simulate | map`` on real exports: quant.to_integer folders and NIR graphs."""

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn as nn

from chip_models.network import read_nir
from neurosim import intnet
from neurosim.cli import main
from neurosim.intnet import run_reference


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def quant_folder(tmp_path_factory):
    """A small CNN trained one step with the int8 scheme and exported by neurosim.quant.to_integer."""
    from neurosim.quant.convert import quantize_model
    from neurosim.quant.export import quantize_input, to_integer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    q = quantize_model(model)
    x = torch.randn(16, 1, 8, 8)
    q.train()
    loss = q(x).square().mean()
    loss.backward()
    q.eval()
    net = to_integer(q, x[:1], name="tiny_cnn")
    folder = tmp_path_factory.mktemp("quant") / "tiny_cnn"
    intnet.save(net, folder)
    xq = quantize_input(net, x[:3].numpy())
    np.savez(folder.parent / "input.npz", input=xq)
    return folder


def test_estimate_on_a_quant_export(quant_folder, tmp_path, capsys):
    rep = tmp_path / "rep.json"
    rc, out, err = _run(capsys, "chip", "estimate", str(quant_folder), "--chip", "tianjic", "-o", str(rep),
                        "--plot", str(tmp_path / "rep.png"))
    assert rc == 0, err
    doc = json.loads(rep.read_text())
    assert doc["summary"]["cores_used"] >= 2 and doc["summary"]["fps"] > 0
    assert {x["name"] for x in doc["layers"]} >= {"0", "4"}
    assert (tmp_path / "rep.md").is_file() and (tmp_path / "rep.png").stat().st_size > 1000
    assert "FPS" in out


def test_simulate_check_on_a_quant_export(quant_folder, tmp_path, capsys):
    rc, out, err = _run(capsys, "chip", "simulate", str(quant_folder), str(quant_folder.parent / "input.npz"),
                        "--check", "--json", "-o", str(tmp_path / "o.npz"))
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["bit_exact"] is True
    with np.load(tmp_path / "o.npz") as o:
        net = intnet.load(quant_folder)
        ref = run_reference(net, {"input": np.load(quant_folder.parent / "input.npz")["input"]})
        np.testing.assert_array_equal(o[net.outputs[0]], ref[net.outputs[0]])


def _nir_graph(w_conv, w_fc, tau=None):
    # IF: dv/dt = r·I; with r = 1/dt (1 ms steps) one step adds exactly I
    neuron2 = nir.IF(r=np.full(6, 1e3), v_threshold=np.ones(6), v_reset=np.zeros(6)) if tau is None else \
        nir.LIF(tau=np.full(6, tau), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6), v_reset=np.zeros(6))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=w_conv, stride=1, padding=1, dilation=1, groups=1,
                           bias=np.zeros(3)),
        "if1": nir.IF(r=np.full((3, 8, 8), 1e3), v_threshold=np.ones((3, 8, 8)), v_reset=np.zeros((3, 8, 8))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=w_fc, bias=np.zeros(6)),
        "n2": neuron2,
        "output": nir.Output(output_type={"output": np.array([6])}),
    }
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "n2"),
             ("n2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def _float_if_reference(x, w_conv, w_fc):
    """Independent float simulation of the NIR IF graph: v += W·x; spike if v > 1; reset to 0."""
    steps = x.shape[0]
    v1, v2, out = np.zeros((3, 8, 8)), np.zeros(6), []
    for t in range(steps):
        xp = np.pad(x[t].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
        cur = np.zeros((3, 8, 8))
        for i in range(3):
            for dy in range(3):
                for dx in range(3):
                    cur[i] += (w_conv[i, :, dy, dx][:, None, None] * xp[:, dy : dy + 8, dx : dx + 8]).sum(axis=0)
        v1 += cur
        s1 = v1 > 1.0
        v1[s1] = 0.0
        pooled = s1.reshape(3, 4, 2, 4, 2).sum(axis=(2, 4)).reshape(-1)
        v2 += w_fc @ pooled
        s2 = v2 > 1.0
        v2[s2] = 0.0
        out.append(s2.astype(np.int64))
    return np.stack(out)


def test_nir_if_graph_matches_an_independent_float_simulation(tmp_path):
    rng = np.random.default_rng(1)
    w_conv = rng.integers(-8, 9, size=(3, 2, 3, 3)) / 8.0  # exactly representable after int8 scaling
    w_fc = rng.integers(-8, 9, size=(6, 48)) / 8.0
    nir.write(str(tmp_path / "g.nir"), _nir_graph(w_conv, w_fc))
    net = read_nir(tmp_path / "g.nir", steps=6)
    x = (rng.random((12, 2, 8, 8)) < 0.4).astype(np.int8)
    from chip_models.config import load_chip
    from chip_models.mapper import map_network
    from chip_models.simulate import simulate

    sim = simulate(map_network(net, load_chip("tianjic")), {"input": x})
    expected = _float_if_reference(x, w_conv, w_fc)
    assert expected.sum() > 0
    np.testing.assert_array_equal(sim.outputs[net.outputs[0]], expected)


def test_nir_lif_parameters(tmp_path):
    rng = np.random.default_rng(2)
    g = _nir_graph(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(6, 48)), tau=0.01)
    nir.write(str(tmp_path / "lif.nir"), g)
    net = read_nir(tmp_path / "lif.nir", dt=1e-3)
    lif = net.layer("fc").neuron
    assert lif.leak_alpha == round(256 * 0.9) and lif.v_th == 4096
    assert net.layer("fc").weight.dtype == np.int8 and np.abs(net.layer("fc").weight).max() >= 64


def test_estimate_on_a_nir_graph(tmp_path, capsys):
    rng = np.random.default_rng(3)
    nir.write(str(tmp_path / "g.nir"), _nir_graph(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(6, 48)), tau=0.02))
    rc, out, err = _run(capsys, "chip", "estimate", str(tmp_path / "g.nir"), "--chip", "tianjicx", "--steps", "5",
                        "--json", "-o", str(tmp_path / "r.json"))
    assert rc == 0, err
    s = json.loads(out)
    assert s["cores_used"] >= 3 and s["fps"] > 0 and s["sops_per_frame"] > 0


def test_oversized_network_is_refused_with_exit_2_and_no_output(tmp_path, capsys):
    rc, out, err = _run(capsys, "chip", "estimate", "reference", "--chip", "tianjic", "--set", "mesh_rows=4",
                        "-o", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"))
    assert rc == 2
    assert err.count("\n") == 1 and "does not fit chip tianjic" in err and "needs" in err and "--set chips" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_network_and_unsupported_nir_node(tmp_path, capsys):
    rc, _, err = _run(capsys, "chip", "map", str(tmp_path / "missing"))
    assert rc == 2 and "does not exist" in err
    (tmp_path / "broken.nir").write_bytes(b"not hdf5")
    rc, _, err = _run(capsys, "chip", "estimate", str(tmp_path / "broken.nir"))
    assert rc == 2 and "cannot read the NIR graph" in err
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])}),
                            "li": nir.LI(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4)),
                            "output": nir.Output(output_type={"output": np.array([4])})},
                     edges=[("input", "li"), ("li", "output")])
    nir.write(str(tmp_path / "li.nir"), g)
    rc, _, err = _run(capsys, "chip", "estimate", str(tmp_path / "li.nir"))
    assert rc == 2 and "NIR node li of type LI is not supported" in err


def test_map_verb_reports_cores_per_layer(capsys):
    rc, out, err = _run(capsys, "chip", "map", "reference", "--chip", "tianjicx", "--json")
    assert rc == 0, err
    s = json.loads(out)
    assert s["cores_used"] <= 160 and {x["name"] for x in s["layers"]} >= {"ann_conv1", "snn_conv3"}


def test_demo_stage_uses_an_exported_network(quant_folder, tmp_path):
    from chip_models.demo import run

    result = run(tmp_path, {"stages": {"hybrid": {"intnet": str(quant_folder)}}}, lambda *a: None, seed=0)
    assert result["network_source"] == str(quant_folder) and result["network"] == "tiny_cnn" and result["fps"] > 0
    doc = json.loads((tmp_path / "chip" / "report.json").read_text())
    assert doc["network_source"] == str(quant_folder)
    assert (tmp_path / "chip" / "report.md").is_file() and (tmp_path / "chip" / "report.png").is_file()


def test_bad_inputs_and_options_exit_2_without_output(quant_folder, tmp_path, capsys):
    np.savez(tmp_path / "wrong.npz", frames=np.zeros((1, 1, 8, 8), np.int8))
    out = tmp_path / "o.npz"
    rc, _, err = _run(capsys, "chip", "simulate", str(quant_folder), str(tmp_path / "wrong.npz"), "-o", str(out))
    assert rc == 2 and "input 'input'" in err and "missing" in err and not out.exists()
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    rc, _, err = _run(capsys, "chip", "simulate", str(quant_folder), str(tmp_path / "bad.npz"), "-o", str(out))
    assert rc == 2 and "not a readable .npz" in err and not out.exists()
    rc, _, err = _run(capsys, "chip", "estimate", "reference", "--activity", "2")
    assert rc == 2 and "--activity" in err
    rc, _, err = _run(capsys, "chip", "estimate", "reference", "--set", "warp_drive=1")
    assert rc == 2 and "unknown parameter warp_drive" in err
    rc, _, err = _run(capsys, "chip", "estimate", "reference", "--chip", "loihi")
    assert rc == 2 and "chip 'loihi' is unknown" in err
    rc, _, err = _run(capsys, "chip", "estimate", "reference", "-o", str(tmp_path / "no_dir" / "r.json"))
    assert rc == 2 and "does not exist" in err


def test_estimate_on_a_neurosim_snn_nir_export(tmp_path, capsys):
    """A spiking network exported by neurosim.snn.save_nir (dt and subtract reset in its metadata)."""
    from neurosim.snn import layers as L
    from neurosim.snn.neurons import Neuron, if_params, lif_box_params
    from neurosim.snn.nir_io import save_nir
    from neurosim.snn.sequential import Sequential

    torch.manual_seed(0)
    net = Sequential(L.Conv2d(2, 4, 3, padding=1), Neuron(lif_box_params(tau_mem_inv=50.0, reset="subtract")),
                     L.Flatten(), L.Linear(4 * 8 * 8, 5), Neuron(if_params(v_th=0.5)))
    save_nir(net, tmp_path / "snn.nir", (2, 8, 8), dt=2e-3)
    ints = read_nir(tmp_path / "snn.nir", steps=4)
    lif = ints.layers[0].neuron
    assert lif.reset_mode == "subtract" and lif.leak_alpha == round(256 * (1 - 2e-3 * 50.0))
    assert ints.layers[-1].neuron.leak_alpha == 256
    rc, out, err = _run(capsys, "chip", "estimate", str(tmp_path / "snn.nir"), "--steps", "4", "--json",
                        "--activity", "0.3")
    assert rc == 0, err
    assert json.loads(out)["sops_per_frame"] > 0


def test_estimate_is_the_same_on_any_thread_count(capsys):
    """--threads only changes how the kernels run: the estimate (from the per-core work and the
    route packets) is identical; a negative count exits 2."""
    from chip_models import kernels

    results = []
    for n in ("1", "2", "0"):
        rc, out, _ = _run(capsys, "chip", "estimate", "reference", "--threads", n, "--json", "--quiet")
        assert rc == 0
        results.append(json.loads(out))
    assert results[0] == results[1] == results[2]
    rc, out, err = _run(capsys, "chip", "estimate", "reference", "--threads", "-1")
    assert rc == 2 and "threads" in err and out == ""
    kernels.set_threads(0)
