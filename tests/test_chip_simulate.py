"""Core-by-core chip simulation equals neurosim.intnet.run_reference bit for bit; mapper limits."""

import numpy as np
import pytest

from chip_models import kernels
from chip_models.config import load_chip
from chip_models.mapper import map_network
from chip_models.reference_net import build_reference, synthetic_inputs
from chip_models.simulate import SimOptions, simulate
from chip_models.simulate import compile as compile_plan
from neurosim.errors import CapacityError, InputError, ParameterError
from neurosim.intnet import InputSpec, IntLayer, IntNetwork, run_reference
from neurosim.intneuron import IntLIFParams

VEC = [pytest.param(p, marks=pytest.mark.skipif(p not in kernels.available_paths(), reason=f"no {p} on this CPU"))
       for p in kernels.PATHS]


def _assert_same(ref: dict, out: dict):
    assert ref.keys() == out.keys()
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)


@pytest.mark.parametrize("path", VEC)
def test_reference_network_matches_python_reference(path):
    net = build_reference(seed=3)
    x = synthetic_inputs(net, frames=2, seed=5, activity=0.15)
    mapping = map_network(net, load_chip("tianjic"))
    with kernels.use_path(path):
        sim = simulate(mapping, x)
    _assert_same(run_reference(net, x), sim.outputs)
    assert sim.active_inputs.sum() > 0 and sim.route_packets.sum() > 0


def _mixed_net(rng):
    """ANN conv → sumpool → flatten → SNN linear with fan-in 512 (split over cores) → ANN lut linear;
    a second SNN conv branch with 40 output channels (several output tiles) and a negative shift."""
    def w(*shape):
        return rng.integers(-128, 128, size=shape).astype(np.int8)

    def b(n, s=2000):
        return rng.integers(-s, s, size=n).astype(np.int32)

    lif = IntLIFParams(v_th=300, v_reset=-20, reset_mode="value", leak_alpha=200, leak_beta=3, refractory_steps=2)
    layers = [
        IntLayer(name="c1", kind="conv2d", source="img", weight=w(8, 2, 3, 3), bias=b(8), shift=6, stride=1, padding=1),
        IntLayer(name="sp", kind="sumpool", source="c1", kernel=2, shift=1),
        IntLayer(name="fl", kind="flatten", source="sp"),
        IntLayer(name="fc1", kind="linear", source="fl", mode="snn", weight=w(300, 512), bias=b(300), shift=4, neuron=lif),
        IntLayer(name="fc2", kind="linear", source="fc1", activation="lut", weight=w(10, 300), bias=b(10), shift=3,
                 lut=w(256)),
        IntLayer(name="s1", kind="conv2d", source="ev", mode="snn", weight=w(40, 2, 3, 3), bias=b(40, 50), shift=-2,
                 stride=2, padding=0, neuron=IntLIFParams(v_th=2000, reset_mode="subtract", leak_alpha=250)),
        IntLayer(name="mp", kind="maxpool", source="s1", kernel=2),
    ]
    inputs = {"img": InputSpec((2, 16, 16), 4, 1), "ev": InputSpec((2, 17, 17), 0, 3)}
    return IntNetwork("mixed", inputs, layers, ["fc2", "mp", "fc1"])


@pytest.mark.parametrize("path", VEC[:2])
def test_mixed_network_with_split_tiles_matches_reference(path):
    rng = np.random.default_rng(0)
    net = _mixed_net(rng)
    mapping = map_network(net, load_chip("tianjic"))
    assert mapping.layers["fc1"].splits[0] == 2  # fan-in 512 > 256: two input tiles, partial sums merged
    assert mapping.layers["s1"].splits[1] >= 2 or mapping.layers["s1"].splits[2] >= 2
    x = {"img": rng.integers(-128, 128, (4, 2, 16, 16)).astype(np.int8),
         "ev": (rng.random((12, 2, 17, 17)) < 0.3).astype(np.int8) * rng.integers(1, 4, (12, 2, 17, 17)).astype(np.int8)}
    with kernels.use_path(path):
        sim = simulate(mapping, x)
    _assert_same(run_reference(net, x), sim.outputs)
    assert sim.binary["fc1"] and not sim.binary["img"]
    assert any(r.partial_sums for r in mapping.routes)


def test_placement_uses_distinct_cores_inside_the_mesh():
    chip = load_chip("tianjic")
    mapping = map_network(build_reference(), chip)
    cores = [t.core for t in mapping.tiles]
    assert len(set(cores)) == len(cores) <= chip.cores
    assert all(0 <= r < chip.rows and 0 <= c < chip.cols for r, c in cores)
    # every consumer tile receives each neuron it needs exactly once
    for lm in mapping.layers.values():
        for t in lm.tiles:
            got = np.concatenate([r.neurons for r in mapping.routes if r.dst == t and not r.partial_sums])
            assert len(got) == len(np.unique(got))


def test_capacity_errors_name_layer_need_and_chip():
    chip = load_chip("tianjic")
    big_kernel = IntNetwork("k", {"x": InputSpec((1, 40, 40))},
                            [IntLayer(name="wide", kind="conv2d", source="x", weight=np.ones((2, 1, 17, 17), np.int8))],
                            ["wide"])
    with pytest.raises(CapacityError, match=r"layer wide: one neuron needs fan-in 289 .* fan-in 256"):
        map_network(big_kernel, chip)
    too_many = IntNetwork("big", {"x": InputSpec((4096,))},
                          [IntLayer(name="fc", kind="linear", source="x", weight=np.ones((4096, 4096), np.int8))], ["fc"])
    with pytest.raises(CapacityError, match=r"layer fc needs \d+ cores but only 156 of 156"):
        map_network(too_many, chip)
    assert len(map_network(too_many, load_chip("tianjic", ["chips=30"])).tiles) <= 30 * 156


def test_bad_inputs_are_refused():
    net = build_reference()
    mapping = map_network(net, load_chip("tianjic"))
    x = synthetic_inputs(net, 1)
    with pytest.raises(InputError, match="missing"):
        simulate(mapping, {"frame": x["frame"]})
    with pytest.raises(InputError, match="not a multiple"):
        simulate(mapping, {"frame": x["frame"], "events": x["events"][:7]})
    with pytest.raises(InputError, match="int8"):
        simulate(mapping, {"frame": x["frame"].astype(np.float32), "events": x["events"]})


def test_event_driven_and_dense_kernels_agree():
    """Forcing all-dense or all-event-driven kernels gives the same outputs, activity and packets."""
    rng = np.random.default_rng(4)
    net = _mixed_net(rng)
    mapping = map_network(net, load_chip("tianjic"))
    x = {"img": rng.integers(-128, 128, (2, 2, 16, 16)).astype(np.int8),
         "ev": (rng.random((6, 2, 17, 17)) < 0.2).astype(np.int8)}
    # per tile group (im2col + dense MAC / event-driven), never / always event-driven for 0/1
    # inputs; then whole spike-input conv layers in one C++ call
    results = [simulate(compile_plan(mapping, SimOptions(fused=False, event_density=density)), x)
               for density in (-10.0, 10.0)]
    results.append(simulate(compile_plan(mapping, SimOptions()), x))
    dense, events, fused = results
    for other in (events, fused):  # same outputs, per-core work and packets whichever kernels ran
        _assert_same(dense.outputs, other.outputs)
        np.testing.assert_array_equal(dense.active_inputs, other.active_inputs)
        np.testing.assert_array_equal(dense.route_packets, other.route_packets)
    _assert_same(run_reference(net, x), fused.outputs)
    assert dense.active_inputs.sum() > 0


def test_fused_layers_count_the_same_work_on_the_reference_network():
    """Per-core active inputs and per-route packets of the fused whole-layer kernels equal the
    per-tile-group kernels' on the reference network (split over many cores per layer)."""
    net = build_reference(seed=1)
    x = synthetic_inputs(net, frames=1, seed=2, activity=0.2)
    mapping = map_network(net, load_chip("tianjic"))
    fused = simulate(mapping, x)
    tiles = simulate(compile_plan(mapping, SimOptions(fused=False)), x)
    _assert_same(tiles.outputs, fused.outputs)
    np.testing.assert_array_equal(tiles.active_inputs, fused.active_inputs)
    np.testing.assert_array_equal(tiles.route_packets, fused.route_packets)


@pytest.mark.parametrize("net_name", ["reference", "mixed"])
def test_route_packets_match_numpy_per_route(net_name):
    """Each route's packets equal min(sparse, dense) computed in numpy straight from its neuron
    list and the run's values: one packet per nonzero value sent, or ceil(neurons / payload) per
    step; partial-sum routes 4 bytes per neuron and step. Checks the runs of consecutive neurons
    (kernels.range_sums) that simulate uses against the plain index lists."""
    if net_name == "reference":
        net = build_reference(seed=2)
        x = synthetic_inputs(net, frames=2, seed=4, activity=0.2)
    else:
        rng = np.random.default_rng(11)
        net = _mixed_net(rng)
        x = {"img": rng.integers(-128, 128, (2, 2, 16, 16)).astype(np.int8),
             "ev": (rng.random((6, 2, 17, 17)) < 0.3).astype(np.int8)}
    mapping = map_network(net, load_chip("tianjic", ["chips=4"]))
    sim = simulate(mapping, x, keep_values=True)
    payload = mapping.chip.packet_payload_bytes
    for i, r in enumerate(mapping.routes):
        v = sim.values[r.value]
        if r.partial_sums:
            want = -(-4 * mapping.tiles[r.src].neurons // payload) * v.shape[0]
        else:
            sent = v.reshape(v.shape[0], -1)[:, np.asarray(r.neurons, np.int64)]
            want = min(int(np.count_nonzero(sent)), -(-len(r.neurons) // payload) * v.shape[0])
        assert sim.route_packets[i] == want, (i, r.value)


@pytest.mark.parametrize("net_name", ["reference", "mixed"])
def test_threads_give_identical_outputs_and_counts(net_name):
    """Row blocks on the thread pool: 1, 2 and 3 threads give the same outputs (equal to
    run_reference), the same per-core active inputs and route packets (the timing model's inputs)
    and the same 0/1 classification of every value."""
    rng = np.random.default_rng(11)
    if net_name == "reference":
        net = build_reference(seed=4)
        x = synthetic_inputs(net, frames=2, seed=9, activity=0.12)
    else:
        net = _mixed_net(rng)
        x = {"img": rng.integers(-128, 128, (4, 2, 16, 16)).astype(np.int8),
             "ev": (rng.random((12, 2, 17, 17)) < 0.3).astype(np.int8) * rng.integers(1, 4, (12, 2, 17, 17)).astype(np.int8)}
    mapping = map_network(net, load_chip("tianjic"))
    ref = run_reference(net, x)
    runs = {n: simulate(mapping, x, threads=n) for n in (1, 2, 3)}
    for n, sim in runs.items():
        _assert_same(ref, sim.outputs)
        np.testing.assert_array_equal(sim.active_inputs, runs[1].active_inputs, err_msg=f"threads={n}")
        np.testing.assert_array_equal(sim.route_packets, runs[1].route_packets, err_msg=f"threads={n}")
        assert sim.binary == runs[1].binary
    assert runs[1].active_inputs.sum() > 0 and runs[1].route_packets.sum() > 0


def test_non_binary_value_outside_every_receptive_field_is_seen_with_threads():
    """A 2 in an input row no output reads (stride 2, the last row) still makes the layer's input
    int8 (gemm) with row blocks, as with one thread: the plan is made from the whole input."""
    w = np.ones((4, 1, 3, 3), np.int8)
    x = np.zeros((2, 1, 10, 9), np.int8)
    x[:, 0, 4, 4] = 1
    x[1, 0, 9, 3] = 2  # row 9: outputs read rows 0-8 only (3x3, stride 2, no padding)
    runs = [kernels.conv_layer(x, w, None, 2, 0, 0, "relu", threads=n) for n in (1, 2, 4)]
    for run in runs:
        assert run.mode == "gemm" and not run.int16
        np.testing.assert_array_equal(run.out, runs[0].out)
        np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
        np.testing.assert_array_equal(run.out_count, runs[0].out_count)


def test_bad_thread_counts_are_refused():
    net = build_reference()
    mapping = map_network(net, load_chip("tianjic"))
    x = synthetic_inputs(net, 1)
    with pytest.raises(ParameterError, match="threads"):
        simulate(mapping, x, threads=-1)
    with pytest.raises(ParameterError, match="threads"):
        kernels.set_threads(1.5)


@pytest.mark.parametrize("net_name", ["reference", "mixed"])
def test_repeated_runs_count_packets_and_classify_values_from_their_own_values(net_name):
    """Several runs on one mapping with different inputs, frame counts and threads (its per-mapping
    caches reused): each run's route packets equal a numpy count from its own values, and every
    value's 0/1 flag equals its measured values, including ``ann_conv1`` (ReLU outputs), whose
    flag is inferred from the max pool of it being int8."""
    rng = np.random.default_rng(5)
    net = build_reference(seed=3) if net_name == "reference" else _mixed_net(rng)
    mapping = map_network(net, load_chip("tianjic", ["chips=4"]))
    payload = mapping.chip.packet_payload_bytes
    for run, activity in enumerate((0.3, 0.05, 0.3)):
        if net_name == "reference":
            x = synthetic_inputs(net, frames=1 + run % 2, seed=run, activity=activity)
        else:
            x = {"img": rng.integers(-128, 128, (2, 2, 16, 16)).astype(np.int8),
                 "ev": (rng.random((6, 2, 17, 17)) < activity).astype(np.int8)}
        sim = simulate(mapping, x, keep_values=True, threads=1 + run % 2)
        for i, r in enumerate(mapping.routes):
            v = sim.values[r.value]
            if not r.partial_sums:
                sent = v.reshape(v.shape[0], -1)[:, np.asarray(r.neurons, np.int64)]
                want = min(int(np.count_nonzero(sent)), -(-len(r.neurons) // payload) * v.shape[0])
                assert sim.route_packets[i] == want, (run, i, r.value)
        for name, flag in sim.binary.items():
            v = sim.values[name]
            assert flag == bool(((v == 0) | (v == 1)).all()), (run, name)
        if net_name == "reference":
            assert not sim.binary["ann_conv1"] and sim.binary["snn_conv1"]


def test_compiled_plans_run_on_their_own_path_and_leave_the_process_default_alone():
    """simulate(compile(mapping, SimOptions(path=p)), x) packs and runs on path p (the per-tile-group
    dense MAC's weights carry it), equals run_reference on every path the CPU has, and neither
    reads nor changes the process-wide path (kernels.use_path around the run changes nothing)."""
    rng = np.random.default_rng(21)
    net = _mixed_net(rng)
    mapping = map_network(net, load_chip("tianjic"))
    x = {"img": rng.integers(-128, 128, (2, 2, 16, 16)).astype(np.int8),
         "ev": (rng.random((6, 2, 17, 17)) < 0.6).astype(np.int8)}  # dense spikes: the dense MAC
    ref = run_reference(net, x)
    default = kernels.get_path()
    for path in kernels.available_paths():
        plan = compile_plan(mapping, SimOptions(path=path, fused=False, threads=1))
        assert plan.path == path
        other = "scalar" if path != "scalar" else default
        with kernels.use_path(other):  # the plan was compiled for `path`: the process default is not read
            sim = simulate(plan, x)
        _assert_same(ref, sim.outputs)
        packed = [w for w in plan.weights.cache.values() if isinstance(w, kernels.DenseWeights)]
        assert packed and {w.path for w in packed} == {path}
        assert kernels.get_path() == default
    with pytest.raises(ParameterError, match="unknown"):
        compile_plan(mapping, SimOptions(path="avx9000"))
    with pytest.raises(ParameterError, match="threads"):
        compile_plan(mapping, SimOptions(threads=-2))


def test_same_plan_same_inputs_same_bits():
    """A plan run twice, and a fresh plan of the same mapping, give identical results."""
    net = build_reference(seed=6)
    x = synthetic_inputs(net, frames=2, seed=3, activity=0.15)
    mapping = map_network(net, load_chip("tianjic"))
    plan = compile_plan(mapping)
    runs = [simulate(plan, x), simulate(plan, x), simulate(compile_plan(mapping), x)]
    for sim in runs[1:]:
        _assert_same(runs[0].outputs, sim.outputs)
        np.testing.assert_array_equal(runs[0].active_inputs, sim.active_inputs)
        np.testing.assert_array_equal(runs[0].route_packets, sim.route_packets)
        assert sim.binary == runs[0].binary
