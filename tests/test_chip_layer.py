"""The fused whole-layer kernel (kernels.conv_layer) equals the Python integer reference bit for bit.

Reference: neurosim.intnet.run_reference on a one-layer IntNetwork (numpy int64 im2col + mac,
requantize, int_lif_step), written independently of the C++ code. Random shapes, strides,
paddings, shifts, biases up to the int32 limits, ANN activations and LIF parameters
(hypothesis), on the scalar and the vector path and for every accumulation mode; the int16
accumulator edge (fan-in 256 of -128 weights on all-one spikes) explicitly.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip_models import kernels
from neurosim.intnet import InputSpec, IntLayer, IntNetwork, run_reference
from neurosim.intneuron import RESET_MODES, IntLIFParams

VEC_PATHS = [
    pytest.param(p, marks=pytest.mark.skipif(p not in kernels.available_paths(), reason=f"this CPU has no {p}"))
    for p in ("scalar", "avx2", "avx512vnni", "amx")
]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layer_case(draw):
    k = draw(st.integers(1, 4))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * pad), 12))
    w = draw(st.integers(max(1, k - 2 * pad), 12))
    t, c = draw(st.integers(1, 4)), draw(st.integers(1, 10))
    m = draw(st.sampled_from([1, 3, 8, 16, 19, 24, 32]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["spikes", "int8", "nonneg"]))
    density = draw(st.floats(0, 1))
    mask = rng.random((t, c, h, w)) < density
    if kind == "spikes":
        x = mask.astype(np.int8)
    else:
        lo = 0 if kind == "nonneg" else -128
        x = np.where(mask, rng.integers(lo, 128, (t, c, h, w)), 0).astype(np.int8)
    wmax = draw(st.sampled_from([1, 64, 128]))
    weight = rng.integers(-wmax, wmax, (m, c, k, k)).astype(np.int8)
    bias = draw(st.sampled_from(["none", "small", "huge"]))
    b = None if bias == "none" else (
        rng.integers(-3000, 3000, m) if bias == "small" else rng.choice([-(2**31), 2**31 - 1, 2**30, -(2**30) - 1], m)
    ).astype(np.int32)
    shift = draw(st.integers(-3, 14))
    snn = draw(st.booleans())
    if snn:
        neuron = IntLIFParams(v_th=draw(st.integers(0, 3000)), v_reset=draw(st.integers(-100, 100)),
                              reset_mode=draw(st.sampled_from(RESET_MODES)), reset_constant=draw(st.integers(0, 500)),
                              leak_alpha=draw(st.integers(0, 256)), leak_beta=draw(st.integers(-20, 20)),
                              refractory_steps=draw(st.integers(0, 3)))
        layer = IntLayer(name="l", kind="conv2d", source="x", mode="snn", weight=weight, bias=b, shift=shift,
                         stride=stride, padding=pad, neuron=neuron)
    else:
        act = draw(st.sampled_from(["relu", "none", "lut"]))
        lut = rng.integers(-128, 128, 256).astype(np.int8) if act == "lut" else None
        layer = IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=weight, bias=b, shift=shift,
                         stride=stride, padding=pad, activation=act, lut=lut)
    return x, layer


def _reference(x: np.ndarray, layer: IntLayer) -> np.ndarray:
    net = IntNetwork("one", {"x": InputSpec(x.shape[1:], 0, x.shape[0])}, [layer], ["l"])
    return run_reference(net, {"x": x})["l"]


def _run(x, layer, mode, threads=None):
    return kernels.conv_layer(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.shift,
                              layer.activation or "none", layer.lut, layer.neuron if layer.mode == "snn" else None,
                              mode=mode, threads=threads)


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(case=layer_case(), mode=st.sampled_from(["auto", "events", "plane", "lut", "gemm"]), threads=st.integers(1, 5))
def test_conv_layer_matches_run_reference(path, case, mode, threads):
    """Every mode, on 1-5 threads (row blocks of the thread pool), equals run_reference."""
    x, layer = case
    with kernels.use_path(path):
        run = _run(x, layer, mode, threads)
    ref = _reference(x, layer)
    np.testing.assert_array_equal(run.out, ref)
    np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
    np.testing.assert_array_equal(run.out_count, np.count_nonzero(ref, axis=0))
    binary = bool(((x == 0) | (x == 1)).all())
    l1 = np.abs(layer.weight.astype(np.int64)).reshape(layer.weight.shape[0], -1).sum(axis=1).max()
    assert run.int16 == (binary and l1 <= 32767)
    # the lut mode needs 0/1 inputs and exact int16 sums; otherwise it runs events
    assert run.mode == mode or mode == "auto" or (mode == "lut" and not run.int16 and run.mode == "events")


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("mode", ["events", "plane", "lut", "gemm"])
@pytest.mark.parametrize("wval", [-128, 127])
def test_int16_accumulators_at_their_edge(path, mode, wval):
    """Fan-in 256 of equal weights on all-one spikes: sums of -32768 / 32512, at the int16 limits
    (int16 is used for 127, whose L1 bound 32512 fits; not for -128, whose bound 32768 does not)."""
    x = np.ones((2, 16, 6, 6), np.int8)
    w = np.full((16, 16, 4, 4), wval, np.int8)
    layer = IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=w, bias=None, shift=0, stride=1,
                     padding=0, activation="none")
    with kernels.use_path(path):
        run = _run(x, layer, mode)
    assert run.int16 == (wval == 127)
    np.testing.assert_array_equal(run.out, _reference(x, layer))
    layer_lif = IntLayer(name="l", kind="conv2d", source="x", mode="snn", weight=w, bias=np.full(16, 5, np.int32),
                         shift=0, stride=1, padding=0, neuron=IntLIFParams(v_th=-40000 if wval < 0 else 30000))
    with kernels.use_path(path):
        run = _run(x, layer_lif, mode)
    np.testing.assert_array_equal(run.out, _reference(x, layer_lif))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 5), stride=st.integers(1, 3), pad=st.integers(0, 2),
       c0=st.integers(0, 3), dc=st.integers(0, 3))
def test_window_counts_sum_each_receptive_field(seed, k, stride, pad, c0, dc):
    rng = np.random.default_rng(seed)
    c, h, w = 4, int(rng.integers(max(1, k - 2 * pad), 11)), int(rng.integers(max(1, k - 2 * pad), 11))
    count = rng.integers(0, 50, (c, h, w)).astype(np.int32)
    c1 = min(c, c0 + dc)
    got = kernels.window_counts(count, (c0, c1), k, k, stride, pad)
    padded = np.pad(count[c0:c1].astype(np.int64), ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    want = [padded[:, oy * stride: oy * stride + k, ox * stride: ox * stride + k].sum() for oy in range(ho) for ox in range(wo)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("path", VEC_PATHS)
def test_nonzero_counts_per_neuron(path):
    rng = np.random.default_rng(2)
    v = np.where(rng.random((37, 3, 11)) < 0.3, rng.integers(-128, 128, (37, 3, 11)), 0).astype(np.int8)
    with kernels.use_path(path):
        np.testing.assert_array_equal(kernels.nonzero_counts(v), np.count_nonzero(v, axis=0).reshape(-1))
        dirty = np.full(v[0].size, 9, np.int32)  # a given array is overwritten (simulate's count arena)
        np.testing.assert_array_equal(kernels.nonzero_counts(v, out=dirty), np.count_nonzero(v, axis=0).reshape(-1))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("mode", ["events", "plane", "lut", "gemm"])
def test_int16_accumulators_beyond_fan_in_256(path, mode):
    """Fan-in 360 with |w| <= 90: the L1 bound 32400 fits int16, so int16 is used and still exact,
    on all-one spikes (sums at the bound) and on random spikes."""
    rng = np.random.default_rng(7)
    w = rng.choice(np.array([-90, 90], np.int8), (12, 40, 3, 3))
    w[0] = 90
    for x in (np.ones((2, 40, 5, 5), np.int8), (rng.random((3, 40, 7, 5)) < 0.4).astype(np.int8)):
        layer = IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=w, bias=None, shift=3, stride=1,
                         padding=1, activation="none")
        with kernels.use_path(path):
            run = _run(x, layer, mode)
        assert run.int16
        np.testing.assert_array_equal(run.out, _reference(x, layer))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,k,stride,pad,m", [(20, 5, 1, 2, 24), (3, 7, 2, 3, 8), (11, 6, 3, 1, 12), (16, 3, 1, 1, 1), (8, 3, 1, 1, 32),
                                              (9, 8, 2, 0, 40), (16, 3, 2, 1, 16), (24, 3, 1, 1, 16),
                                              (16, 3, 1, 1, 48), (8, 3, 2, 1, 64)])
def test_lut_mode_on_wide_kernel_rows(path, c, k, stride, pad, m):
    """The lut mode's three ways to read a kernel row's spike bits (whole bytes when C % 8 == 0, one
    64-bit word when kw*C + 7 <= 64, 4-byte loads per group otherwise) and its table sums for
    output counts that are / are not multiples of 8, against the Python reference, LIF and ANN.
    C % 8 == 0 with M % 16 == 0 runs the table-major passes on AVX2 (pairs of tables; an odd
    table count, 9 per row for C = 24, ends with a single-table pass; stride 2 included)."""
    rng = np.random.default_rng(c * 100 + k)
    x = (rng.random((4, c, 13, 11)) < 0.3).astype(np.int8)
    w = rng.integers(-56, 57, (m, c, k, k)).astype(np.int8)  # fan-in <= 576: sums stay inside int16
    b = rng.integers(-500, 500, m).astype(np.int32)
    # threads: 1, row blocks (2, 3), and blocks of 16 output channels (2 when M % 32 == 0)
    _check_layer(x, w, b, stride, pad, "lut", path, threads=(1, 2, 3), ann_shift=4, v_th=200, int16=True)


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4), h=st.integers(1, 40), w=st.integers(1, 70),
       planes=st.integers(1, 5))
def test_max_pool_matches_run_reference(path, seed, k, h, w, planes):
    """kernels.max_pool (AVX2 for 2x2 windows, 16 outputs per step; scalar otherwise and on the tail)
    against run_reference's maxpool, int8 values including -128 and 127, ragged edges dropped."""
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-128, -1, 0, 1, 127], np.int8), (2, planes, h, w)) if seed % 2 else \
        rng.integers(-128, 128, (2, planes, h, w)).astype(np.int8)
    if h < k or w < k:
        return
    layer = IntLayer(name="l", kind="maxpool", source="x", kernel=k)
    with kernels.use_path(path):
        out = kernels.max_pool(x, k)
    np.testing.assert_array_equal(out, _reference(x, layer))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), groups=st.integers(0, 12))
def test_group_sums_match_numpy(seed, n, groups):
    """kernels.group_sums (route packets from per-neuron counts) against numpy, empty groups included."""
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 1000, n).astype(np.int32)
    lens = rng.integers(0, 20, groups)
    ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    idx = rng.integers(0, n, int(ptr[-1])).astype(np.int32)
    expected = [int(count[idx[a:b]].astype(np.int64).sum()) for a, b in zip(ptr[:-1], ptr[1:])]
    np.testing.assert_array_equal(kernels.group_sums(count, ptr, idx), expected)
    with pytest.raises(ValueError):
        kernels.group_sums(count, ptr, np.full(len(idx) + 1, n, np.int32)) if len(idx) else kernels.group_sums(
            count, np.array([0, 1], np.int64), np.array([n], np.int32))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("k,stride,pad,lo", [(9, 2, 4, -128), (10, 1, 0, 0), (3, 1, 1, -128), (1, 2, 0, -5)])
def test_gemm_mode_on_wide_and_narrow_kernels(path, k, stride, pad, lo):
    """The gemm mode's im2col (one 8-byte move per kernel row up to kw = 8, a kw-byte copy beyond)
    with signed and non-negative int8 inputs (the dense MAC's two AVX2 kernels), ANN and LIF."""
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.integers(lo, 128, (3, 5, 17, 13)).astype(np.int8)
    w = rng.integers(-128, 128, (7, 5, k, k)).astype(np.int8)
    b = rng.integers(-5000, 5000, 7).astype(np.int32)
    for layer in (
        IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=w, bias=b, shift=9, stride=stride,
                 padding=pad, activation="none"),
        IntLayer(name="l", kind="conv2d", source="x", mode="snn", weight=w, bias=b, shift=6, stride=stride,
                 padding=pad, neuron=IntLIFParams(v_th=300, reset_mode="value", leak_alpha=200)),
    ):
        with kernels.use_path(path):
            run = _run(x, layer, "auto")
        assert run.mode == "gemm"
        ref = _reference(x, layer)
        np.testing.assert_array_equal(run.out, ref)
        np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
        np.testing.assert_array_equal(run.out_count, np.count_nonzero(ref, axis=0))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("mode", ["events", "plane", "lut", "gemm"])
def test_counts_over_more_than_255_steps(path, mode):
    """The per-neuron nonzero counts go through byte counters flushed every 255 steps: 600 steps,
    most inputs and outputs nonzero nearly every step, must still count exactly."""
    rng = np.random.default_rng(3)
    x = (rng.random((600, 8, 5, 6)) < 0.9).astype(np.int8)
    w = rng.integers(0, 30, (16, 8, 3, 3)).astype(np.int8)
    layer = IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=w, bias=None, shift=2, stride=1,
                     padding=1, activation="relu")
    with kernels.use_path(path):
        run = _run(x, layer, mode)
    ref = _reference(x, layer)
    np.testing.assert_array_equal(run.out, ref)
    np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
    np.testing.assert_array_equal(run.out_count, np.count_nonzero(ref, axis=0))
    assert run.in_count.max() > 255 and run.out_count.max() > 255


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), groups=st.integers(0, 12))
def test_range_sums_match_numpy(seed, n, groups):
    """kernels.range_sums (route packets from per-neuron counts, each route's neurons as runs of
    consecutive indices) against numpy sums of the same index lists; empty runs and groups
    included, and bad runs refused."""
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 2**31 - 1, n).astype(np.int32)  # near the int32 top: the sums need int64
    runs = rng.integers(0, 6, groups)
    ptr = np.concatenate([[0], np.cumsum(runs)]).astype(np.int64)
    starts = rng.integers(0, n + 1, int(ptr[-1])).astype(np.int64)
    stops = np.minimum(starts + rng.integers(0, 40, len(starts)), n).astype(np.int64)
    expected = [sum(int(count[a:b].astype(np.int64).sum()) for a, b in zip(starts[p0:p1], stops[p0:p1]))
                for p0, p1 in zip(ptr[:-1], ptr[1:])]
    np.testing.assert_array_equal(kernels.range_sums(count, ptr, starts, stops), expected)
    # runs covering the counts several times (the prefix-sum way) and once (the direct sums)
    for reps in (1, 5):
        ptr2 = np.array([0, reps], np.int64)
        got = kernels.range_sums(count, ptr2, np.zeros(reps, np.int64), np.full(reps, n, np.int64))
        assert got[0] == reps * int(count.astype(np.int64).sum())
    with pytest.raises(ValueError):
        kernels.range_sums(count, np.array([0, 1], np.int64), np.array([0], np.int64), np.array([n + 1], np.int64))
    with pytest.raises(ValueError):
        kernels.range_sums(count, np.array([0, 1], np.int64), np.array([1], np.int64), np.array([0], np.int64))


@pytest.mark.parametrize("threads", [1, 2])
def test_run_layer_overwrites_the_count_arrays_it_is_given(threads):
    """kernels.run_layer's in_count / out_count arguments (simulate's count arena, never cleared
    in Python) are overwritten: arrays full of garbage end with the same counts as new ones,
    which equal numpy's nonzero counts."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, (5, 3, 9, 9)).astype(np.int8)
    call = kernels.LayerCall.make(rng.integers(-50, 50, (8, 3, 3, 3)).astype(np.int8), None, 1, 1, 4, "relu")
    fresh = kernels.run_layer(x, call, threads)
    in_count, out_count = np.full((3, 9, 9), 77, np.int32), np.full((8, 9, 9), -5, np.int32)
    run = kernels.run_layer(x, call, threads, None, in_count, out_count)
    np.testing.assert_array_equal(in_count, np.count_nonzero(x, axis=0))
    np.testing.assert_array_equal(out_count, np.count_nonzero(fresh.out, axis=0))
    np.testing.assert_array_equal(run.out, fresh.out)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4), stride=st.integers(1, 3), pad=st.integers(0, 2))
def test_tally_counts_tiles_and_routes_like_numpy(seed, k, stride, pad):
    """kernels.Tally (simulate's counting after a run, one C++ call) against numpy: each tile's
    active inputs are its output positions' receptive-field sums of the arena's counts over its
    channel range, each route's packets the fewer of its neurons' count sum and its dense packets
    per step times the steps; bad tables are refused when added."""
    rng = np.random.default_rng(seed)
    c, h, w, offset = 3, 7, 6, 5
    arena = rng.integers(0, 2**20 + 1, offset + c * h * w + 4).astype(np.int32)  # (counts <= the steps)
    count = arena[offset : offset + c * h * w].reshape(c, h, w)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    padded = np.pad(count[1:3].astype(np.int64), ((0, 0), (pad, pad), (pad, pad)))
    per_position = np.array([padded[:, y * stride : y * stride + k, x * stride : x * stride + k].sum()
                             for y in range(ho) for x in range(wo)])
    starts = np.array([0, ho * wo // 2, 0], np.int64)
    stops = np.array([ho * wo // 2, ho * wo, ho * wo], np.int64)
    tiles = np.array([4, 1, 4], np.int64)
    tally = kernels.Tally(len(arena), 6, 3)
    tally.add_windows(offset, c, h, w, 1, 3, k, k, stride, pad, starts, stops, tiles)
    ptr, r_starts, r_stops = [0, 2, 2, 3], [0, 10, 3], [4, 30, len(arena)]
    routes, value_of, dense = [2, 0, 1], [0, 1, 1], [2**20, 3, 16]
    tally.set_routes(ptr, r_starts, r_stops, routes, value_of, dense, 2)
    sums = [arena[0:4].astype(np.int64).sum() + arena[10:30].astype(np.int64).sum(), 0,
            arena[3:].astype(np.int64).sum()]
    for steps, threads in (([2**20, 2**20], 1), ([2**20, 2**20], 2), ([2**40, 2**40], 2)):  # int32 / int64 sums
        steps = np.array(steps, np.int64)
        active = np.ones(6, np.int64)
        packets = np.full(3, -1, np.int64)
        tally.run(arena, steps, active, packets, threads)
        want_active = np.ones(6, np.int64)
        for a, b, t in zip(starts, stops, tiles):
            want_active[t] += per_position[a:b].sum()
        np.testing.assert_array_equal(active, want_active)
        want = np.zeros(3, np.int64)
        for g, r in enumerate(routes):
            want[r] = min(sums[g], dense[g] * steps[value_of[g]])
        np.testing.assert_array_equal(packets, want)
    with pytest.raises(ValueError, match="arena"):
        tally.add_windows(len(arena) - 10, c, h, w, 0, 1, k, k, stride, pad, starts, stops, tiles)
    with pytest.raises(ValueError, match="tile index"):
        tally.add_windows(offset, c, h, w, 0, 1, k, k, stride, pad, starts, stops, tiles + 6)
    with pytest.raises(ValueError, match="runs must lie"):
        tally.set_routes([0, 1], [0], [len(arena) + 1], [0], [0], [1], 1)
    with pytest.raises(ValueError, match="arena must have"):
        tally.run(arena[:-1], steps, active, packets)


def _check_layer(x, w, b, stride, pad, mode, path, threads=(1, 2), ann_shift=5, v_th=150, int16=None):
    """ANN (relu) and LIF versions of one conv layer in ``mode`` against run_reference (and, when
    ``int16`` is given, whether the kernel used int16 accumulators)."""
    for layer in (
        IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=w, bias=b, shift=ann_shift, stride=stride,
                 padding=pad, activation="relu"),
        IntLayer(name="l", kind="conv2d", source="x", mode="snn", weight=w, bias=b, shift=3, stride=stride,
                 padding=pad, neuron=IntLIFParams(v_th=v_th, reset_mode="subtract", leak_alpha=230)),
    ):
        ref = _reference(x, layer)
        for n in threads:
            with kernels.use_path(path):
                run = _run(x, layer, mode, n)
            assert run.mode == mode
            assert int16 is None or run.int16 == int16
            np.testing.assert_array_equal(run.out, ref, err_msg=f"threads={n}")
            np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
            np.testing.assert_array_equal(run.out_count, np.count_nonzero(ref, axis=0))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,k,stride,pad,m", [(2, 7, 2, 3, 8), (8, 3, 1, 1, 16), (2, 4, 1, 1, 8), (3, 5, 2, 2, 8)])
def test_event_spans_of_fixed_and_other_lengths(path, c, k, stride, pad, m):
    """events mode with int16 accumulators: the row spans of ceil(kw/s)*M = 32 (7x7 stride 2 with 8
    outputs, snn_conv1's shape; 4x4 with 8) and 48 (3x3 with 16) int16, whose lengths are
    compile-time constants, and a span of another length (general path), at 10 % and 60 %
    activity, on 1 and 2 threads."""
    rng = np.random.default_rng(c * 10 + k)
    w = rng.integers(-60, 61, (m, c, k, k)).astype(np.int8)
    b = rng.integers(-300, 300, m).astype(np.int32)
    for density in (0.1, 0.6):
        x = (rng.random((5, c, 21, 26)) < density).astype(np.int8)
        _check_layer(x, w, b, stride, pad, "events", path)


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,k,m,pad", [(16, 3, 1, 1), (5, 4, 3, 2), (2, 1, 4, 0), (16, 3, 2, 0)])
def test_plane_mode_with_few_outputs(path, c, k, m, pad):
    """plane mode with M <= 4 on spikes (AVX2: blocks of 8 output rows x 16 columns in registers,
    mask AND weight per tap; 16x16 like snn_xcorr, and widths that are not multiples of 16)."""
    rng = np.random.default_rng(c * 10 + k + m)
    w = rng.integers(-80, 81, (m, c, k, k)).astype(np.int8)
    b = rng.integers(-300, 300, m).astype(np.int32)
    for h, wd in ((16, 16), (13, 37)):
        x = (rng.random((4, c, h, wd)) < 0.3).astype(np.int8)
        _check_layer(x, w, b, 1, pad, "plane", path, threads=(1, 3))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,k,stride,pad,m,lo", [(1, 7, 2, 3, 8, 0), (8, 3, 1, 1, 16, 0), (16, 3, 1, 1, 16, -128),
                                                 (3, 3, 1, 1, 24, -128), (5, 2, 2, 0, 32, -128), (2, 9, 1, 4, 8, -128)])
def test_gemm_mode_few_outputs_in_registers(path, c, k, stride, pad, m, lo):
    """gemm mode with M % 8 == 0 and M <= 32 (AVX2: int16 pairs of the patch broadcast against
    weight pairs, vpmaddwd, the M accumulators in registers): odd and even fan-ins, kw up to 8 and
    beyond (16-byte row moves or copies), signed and non-negative inputs, -128 weights."""
    rng = np.random.default_rng(c * 100 + m)
    x = rng.integers(lo, 128, (3, c, 15, 17)).astype(np.int8)
    w = rng.integers(-128, 128, (m, c, k, k)).astype(np.int8)
    w[0] = -128
    b = rng.integers(-5000, 5000, m).astype(np.int32)
    _check_layer(x, w, b, stride, pad, "gemm", path)


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,k,m,wval,stride", [(1, 7, 8, -128, 2), (3, 3, 16, -128, 1), (5, 3, 24, 127, 1), (2, 5, 32, -128, 2),
                                               (1, 1, 8, -128, 1), (4, 3, 8, -128, 1), (8, 3, 16, 127, 2),
                                               (16, 2, 32, -128, 1), (12, 4, 24, -128, 3)])
def test_gemm_quads_at_the_pair_sum_limit(path, c, k, m, wval, stride):
    """gemm on inputs in 0..127 (AVX2: vpmaddubsw of int8 quads, then vpmaddwd by ones; avx512vnni
    and amx: one vpdpbusd per quad): every
    input 127 against weights of -128 (or 127) puts each vpmaddubsw pair sum at its largest,
    2 * 127 * 128 = 32512, just inside int16; fan-ins that are not multiples of 4 (7x7x1 = 49,
    3x3x3 = 27, 5x5x2 = 50, 1) pad the last quad; with C % 4 == 0 the quads come straight from a
    channel-last copy (no im2col), in blocks of 4 or 2 positions plus the row's rest, strides 1-3;
    a zero bias and shift 12 keep the outputs inside int8 so saturating sums would show."""
    rng = np.random.default_rng(c * 7 + k)
    x = np.full((2, c, 11, 13), 127, np.int8)
    x[1] = rng.integers(0, 128, (c, 11, 13))
    w = np.full((m, c, k, k), wval, np.int8)
    w[m // 2:] = rng.integers(-128, 128, (m - m // 2, c, k, k))
    _check_layer(x, w, None, stride, k // 2, "gemm", path, ann_shift=12, v_th=10**6)


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,width", [(4, 16), (8, 21), (16, 35), (12, 33), (16, 15)])
def test_gemm_quads_channel_last_copy_of_wide_rows(path, c, width):
    """The channel-last copy that the gemm quads read (C % 4 == 0, inputs 0..127): rows of 16
    pixels or more go 16 at a time through byte / word / dword interleaves for C = 4, 8, 16, and
    the rest of the row (and every other C) byte by byte."""
    rng = np.random.default_rng(c * 1000 + width)
    x = rng.integers(0, 128, (2, c, 9, width)).astype(np.int8)
    w = rng.integers(-128, 128, (16, c, 3, 3)).astype(np.int8)
    b = rng.integers(-5000, 5000, 16).astype(np.int32)
    _check_layer(x, w, b, 1, 1, "gemm", path)


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,w,shift,reset", [(16, 21, 0, "subtract"), (16, 32, 1, "subtract"), (8, 37, 4, "value"),
                                             (32, 18, 29, "subtract"), (24, 16, 2, "value")])
def test_lut_bit_image_of_wide_rows_and_fast_soma(path, c, w, shift, reset):
    """The lut mode's bit image from whole channel planes (C % 8 == 0: one byte group, two
    interleaved by SSE2 unpacks in blocks of 16 columns plus a tail, or more), kept across steps
    (only the padding is zero), and the shorter LIF pass (rounding as (x + 2^(s-1)) >> s, |bias| up
    to 2^28; subtract reset without a blend) for shifts 0..29, against the Python reference over several steps."""
    rng = np.random.default_rng(c * 1000 + w)
    x = (rng.random((6, c, 9, w)) < 0.3).astype(np.int8)
    m = 16
    weight = rng.integers(-40, 41, (m, c, 3, 3)).astype(np.int8)
    bias = rng.choice([2**28, 2**28 - 4000, -(2**28)], m).astype(np.int32) if shift == 29 else rng.integers(-300, 300, m).astype(np.int32)
    neuron = IntLIFParams(v_th=40 if shift < 10 else 0, v_reset=-7, reset_mode=reset, leak_alpha=230)
    layer = IntLayer(name="l", kind="conv2d", source="x", mode="snn", weight=weight, bias=bias, shift=shift, stride=1,
                     padding=1, neuron=neuron)
    ref = _reference(x, layer)
    assert 0 < np.count_nonzero(ref) < ref.size  # spikes and silence: the soma's both branches ran
    for threads in (1, 2):
        with kernels.use_path(path):
            run = _run(x, layer, "lut", threads)
        assert run.mode == "lut" and run.int16
        np.testing.assert_array_equal(run.out, ref, err_msg=f"threads={threads}")
        np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
        np.testing.assert_array_equal(run.out_count, np.count_nonzero(ref, axis=0))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("mode", ["events", "plane", "lut"])
@pytest.mark.parametrize("reset", ["subtract", "value"])
def test_lif_leak_over_the_whole_membrane_range(path, mode, reset):
    """The int16-accumulator LIF soma's leak floor(v * alpha / 256) (AVX2: vpmaddwd of v's int16
    halves + vpmulhuw for alpha < 256, vpmulld for 256) for alphas 0..256 around the 8-bit edges,
    on membranes across the whole 28-bit range, positive and negative: biases up to +-2^28 with
    shift 0 drive the membranes into both clamps, smaller ones leave them in between."""
    rng = np.random.default_rng(8)
    m, c = 16, 3
    w = rng.integers(-128, 128, (m, c, 3, 3)).astype(np.int8)
    b = np.array([2**28, -(2**28), 2**27 + 12345, -(2**27) - 999, 2**24 + 7, -(2**24) - 3, 65535, -65536,
                  65536, -65537, 300, -300, 1, -1, 0, 2**20], np.int32)
    x = (rng.random((7, c, 9, 10)) < 0.5).astype(np.int8)
    for alpha in (0, 1, 2, 127, 128, 129, 200, 254, 255, 256):
        for v_th in (0, 1000, 2**26):
            neuron = IntLIFParams(v_th=v_th, v_reset=-5, reset_mode=reset, leak_alpha=alpha)
            layer = IntLayer(name="l", kind="conv2d", source="x", mode="snn", weight=w, bias=b, shift=0, stride=1,
                             padding=1, neuron=neuron)
            ref = _reference(x, layer)
            with kernels.use_path(path):
                run = _run(x, layer, mode, 1)
            assert run.mode == mode and run.int16
            np.testing.assert_array_equal(run.out, ref, err_msg=f"alpha={alpha} v_th={v_th}")


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc/self/task"), reason="needs fork and /proc")
def test_thread_pool_starts_its_own_workers_in_a_forked_child():
    """fork() copies only the calling thread: the child must not count on the parent's pool workers
    (or on a mutex copied in a locked state). The pool is renewed in the child (pthread_atfork), so a
    2-thread layer call there starts one new worker and equals run_reference."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 128, (3, 8, 48, 40)).astype(np.int8)
    layer = IntLayer(name="l", kind="conv2d", source="x", mode="ann", weight=rng.integers(-50, 50, (16, 8, 3, 3)).astype(np.int8),
                     bias=rng.integers(-500, 500, 16).astype(np.int32), shift=6, stride=1, padding=1, activation="relu")
    ref = _reference(x, layer)
    np.testing.assert_array_equal(_run(x, layer, "gemm", threads=2).out, ref)  # the parent's pool has a worker now
    pid = os.fork()
    if pid == 0:  # child: report through the exit code only
        code = 1
        try:
            alone = len(os.listdir("/proc/self/task"))
            out = _run(x, layer, "gemm", threads=2).out
            code = 0 if (alone, len(os.listdir("/proc/self/task")), np.array_equal(out, ref)) == (1, 2, True) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child's 2-thread call did not start its own worker or differed"


def test_typed_kernel_parameters():
    """The C++ layer takes named, typed parameters: one enum member per path / soma / mode name
    (same order as the Python tables), LayerParams and LIFParams with named fields filled by
    LayerCall.make from the layer's arguments, and codes that are no member are refused."""
    from chip_models import _kernels as _k
    from neurosim.intneuron import RESET_MODES, IntLIFParams

    assert [p.name.lower() for p in _k.Path] == list(kernels.PATHS)
    assert [m.name.lower() for m in _k.AccMode] == list(kernels.MODES)
    assert {a: s.name.lower() for a, s in kernels.ACTIVATIONS.items()} == {"none": "none", "relu": "relu", "lut": "lut"}
    neuron = IntLIFParams(v_th=77, v_reset=-3, reset_mode=RESET_MODES[-1], reset_constant=5, leak_alpha=200,
                          leak_beta=-2, refractory_steps=4)
    call = kernels.LayerCall.make(np.ones((8, 2, 3, 3), np.int8), None, 2, 1, 3, neuron=neuron, mode="plane")
    p = call.params
    assert (p.stride, p.pad, p.shift, p.soma, p.mode) == (2, 1, 3, _k.Soma.LIF, _k.AccMode.PLANE)
    assert (p.lif.v_th, p.lif.v_reset, p.lif.reset_mode, p.lif.reset_constant, p.lif.leak_alpha, p.lif.leak_beta,
            p.lif.refractory_steps) == (77, -3, len(RESET_MODES) - 1, 5, 200, -2, 4)
    ann = kernels.LayerCall.make(np.ones((8, 2, 3, 3), np.int8), None, 1, 0, 0, "relu").params
    assert (ann.soma, ann.mode) == (_k.Soma.RELU, _k.AccMode.AUTO)
    with pytest.raises(TypeError):
        _k.LayerParams(soma=7)
    with pytest.raises(ValueError, match="stride"):
        _k.LayerParams(stride=0)
    with pytest.raises(kernels.ParameterError, match="lut"):
        kernels.LayerCall.make(np.ones((8, 2, 3, 3), np.int8), None, 1, 0, 0, "lut")


ALL_PATHS = [
    pytest.param(p, marks=pytest.mark.skipif(p not in kernels.available_paths(), reason=f"this CPU has no {p}"))
    for p in kernels.PATHS
]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("m,lo", [(40, -128), (7, 0), (72, 0)])
def test_gemm_mode_dense_mac_on_every_path(path, m, lo):
    """ANN conv layers in the gemm mode with M > 32 or M % 8 != 0 run the dense MAC of the call's
    path (avx512vnni / avxvnni: vpdpbusd rows or panels, amx: tiles): ANN and LIF outputs and the
    counts equal run_reference on 1 and 2 threads, with signed and non-negative int8 inputs, a
    fan-in of 288 and biases at the int32 edges (the accumulator saturates before the shift)."""
    rng = np.random.default_rng(m)
    x = rng.integers(lo, 128, (2, 32, 9, 11)).astype(np.int8)
    x[0, :, 0, :] = -128 if lo < 0 else 127
    w = rng.integers(-128, 128, (m, 32, 3, 3)).astype(np.int8)
    w[0] = -128
    b = rng.integers(-5000, 5000, m).astype(np.int32)
    b[0], b[1] = 2**31 - 1, -(2**31)
    _check_layer(x, w, b, 1, 1, "gemm", path, ann_shift=12, v_th=2000)
