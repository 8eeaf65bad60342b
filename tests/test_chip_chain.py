"""SNN chains in one C++ call (kernels.snn_chain, simulate's chain path) equal the Python integer
reference bit for bit.

Reference: neurosim.intnet.run_reference on the same layers as an IntNetwork (numpy int64
im2col + mac, requantize, int_lif_step, max pooling), written independently of the C++ code, with
every intermediate value as an output so the per-neuron counts are checked too. Random chains
(hypothesis): 2-4 conv stages, max pools of 2 and 3 between them, strides, paddings, kernel sizes,
biases up to the int32 limits, shifts, LIF parameters (refractory, every reset mode) and a last
stage in ANN or SNN mode; on the scalar and the vector path, and on 1, 2 and 3 threads (each
stage's output rows cut into bands, the bands of every block of steps run as a data flow on the
chain's threads). The simulator's chain path must also give the same outputs, per-core active inputs and
route packets as the layer-by-layer path on 1-3 threads.
"""

import importlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chip_models import kernels
from chip_models.config import load_chip
from chip_models.mapper import map_network
from chip_models.reference_net import build_reference, synthetic_inputs
from chip_models.simulate import simulate
from neurosim.intnet import InputSpec, IntLayer, IntNetwork, run_reference
from neurosim.intneuron import RESET_MODES, IntLIFParams

sim_mod = importlib.import_module("chip_models.simulate")  # the module; chip_models.simulate is the function

VEC_PATHS = [
    pytest.param(p, marks=pytest.mark.skipif(p not in kernels.available_paths(), reason=f"this CPU has no {p}"))
    for p in ("scalar", "avx2", "avx512vnni")
]


def _neuron(draw) -> IntLIFParams:
    return IntLIFParams(v_th=draw(st.integers(0, 400)), v_reset=draw(st.integers(-50, 50)),
                        reset_mode=draw(st.sampled_from(RESET_MODES)), reset_constant=draw(st.integers(0, 300)),
                        leak_alpha=draw(st.integers(0, 256)), leak_beta=draw(st.integers(-10, 10)),
                        refractory_steps=draw(st.sampled_from([0, 0, 2])))


@st.composite
def chain_case(draw):
    """(x, layers, pools): conv stages with optional max pools before stages 1.., shapes that fit."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = draw(st.integers(1, 5))
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(6, 22)), draw(st.integers(6, 22))
    density = draw(st.sampled_from([0.0, 0.1, 0.4, 1.0]))
    x = (rng.random((t, c, h, w)) < density).astype(np.int8)
    n = draw(st.integers(2, 4))
    layers, pools, src = [], [], "x"
    for i in range(n):
        last = i == n - 1
        pool = draw(st.sampled_from([0, 0, 2, 3])) if i else 0
        if pool:
            assume(h >= pool and w >= pool)
            layers.append(IntLayer(name=f"p{i}", kind="maxpool", source=src, kernel=pool))
            src, h, w = f"p{i}", h // pool, w // pool
        k = draw(st.integers(1, 7 if i == 0 else 4))
        stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 3))
        assume(h + 2 * pad >= k and w + 2 * pad >= k)
        m = draw(st.sampled_from([1, 3, 8, 16] if last else [8, 16, 24]))
        wmax = draw(st.sampled_from([2, 64, 128]))
        weight = rng.integers(-wmax, wmax, (m, c, k, k)).astype(np.int8)
        bias = draw(st.sampled_from(["none", "small", "huge"]))
        b = None if bias == "none" else (
            rng.integers(-500, 500, m) if bias == "small" else rng.choice([-(2**31), 2**31 - 1, 2**28, -(2**30)], m)
        ).astype(np.int32)
        shift = draw(st.integers(-2, 10))
        if last and draw(st.booleans()):
            act = draw(st.sampled_from(["relu", "none", "lut"]))
            lut = rng.integers(-128, 128, 256).astype(np.int8) if act == "lut" else None
            layer = IntLayer(name=f"c{i}", kind="conv2d", source=src, mode="ann", weight=weight, bias=b, shift=shift,
                             stride=stride, padding=pad, activation=act, lut=lut)
        else:
            layer = IntLayer(name=f"c{i}", kind="conv2d", source=src, mode="snn", weight=weight, bias=b, shift=shift,
                             stride=stride, padding=pad, neuron=_neuron(draw))
        layers.append(layer)
        pools.append(pool)
        src, c = layer.name, m
        h, w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return x, layers, pools


def _call(layer: IntLayer) -> kernels.LayerCall:
    return kernels.LayerCall.make(layer.weight, layer.bias, layer.stride, layer.padding, layer.shift,
                                  layer.activation or "none", layer.lut, layer.neuron if layer.mode == "snn" else None)


def _int16_exact(layer: IntLayer) -> bool:
    return int(np.abs(layer.weight.astype(np.int64)).reshape(layer.weight.shape[0], -1).sum(axis=1).max()) <= 32767


def _first_stages(first: IntLayer, path: str) -> list[str]:
    """auto, and spans and rows where the rows can run on ``path`` (AVX-512 VNNI + VBMI)."""
    rows = kernels.chain_rows_available(_call(first), path)
    return ["auto", "spans", "rows"] if rows else ["auto", "spans"]


def _check_chain(x, layers, pools, path, threads=(1, 2, 3), block_steps=0):
    """snn_chain on each thread count and first stage (spans, VNNI rows where available, auto)
    equals run_reference: the last output and every count."""
    net = IntNetwork("chain", {"x": InputSpec(x.shape[1:], 0, x.shape[0])}, layers, [l.name for l in layers])
    ref = run_reference(net, {"x": x})
    convs = [l for l in layers if l.kind == "conv2d"]
    cases = [(n, f, kept) for n in threads for f in _first_stages(convs[0], path) for kept in (False, True)]
    for n, first, kept in cases:
        with kernels.use_path(path):
            calls = [_call(l) for l in convs]
            if kept:  # tables kept across runs (simulate's plans): made by the first run, reused by the second
                spec = kernels.ChainSpec.make(x.shape[1:], calls, pools, first_stage=first, keep_tables=True)
                spec.run(x, n, block_steps)
                run = spec.run(x, n, block_steps)
            else:
                run = kernels.snn_chain(x, calls, pools, threads=n, block_steps=block_steps, first_stage=first)
        if not all(_int16_exact(l) for l in convs):
            assert run is None  # the chain declines; the layers then run one by one
            return None
        assert run is not None
        msg = f"threads={n} first_stage={first} kept_tables={kept}"
        np.testing.assert_array_equal(run.out, ref[convs[-1].name], err_msg=msg)
        np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0), err_msg=msg)
        for i, l in enumerate(convs):
            np.testing.assert_array_equal(run.out_counts[i], np.count_nonzero(ref[l.name], axis=0), err_msg=f"{l.name} {msg}")
            if pools[i]:
                np.testing.assert_array_equal(run.pool_counts[i], np.count_nonzero(ref[l.source], axis=0),
                                              err_msg=f"{l.source} {msg}")
            else:
                assert run.pool_counts[i] is None
    return run


@pytest.mark.parametrize("path", VEC_PATHS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=chain_case())
def test_chain_equals_reference_on_random_chains(path, case):
    x, layers, pools = case
    _check_chain(x, layers, pools, path)


@st.composite
def fast_lif_case(draw):
    """Two SNN stages (and a last one) whose LIF is in the range of the fused fast soma (beta 0, no
    refractory period, 0 <= alpha <= 256, reset to a value or subtract with v_th >= 0), with its
    edges: shifts 0..31, biases at +-2^28, membranes driven into the 28-bit clamp, alpha 0, 255 and
    256, rows of neurons that are not a multiple of 16 (the vector tails), blocks of 1-5 steps."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t, h, w = draw(st.integers(1, 12)), draw(st.integers(3, 13)), draw(st.integers(3, 13))
    x = (rng.random((t, 2, h, w)) < draw(st.sampled_from([0.1, 0.5, 1.0]))).astype(np.int8)
    layers, src, c = [], "x", 2
    for i in range(3):
        last = i == 2
        m = draw(st.sampled_from([1, 3, 8] if last else [8, 16]))
        mode = draw(st.sampled_from(["value", "subtract"]))
        v_th = draw(st.sampled_from([0, 1, 64, 2**20, 2**27 - 1])) if mode == "subtract" else draw(st.integers(-300, 300))
        neuron = IntLIFParams(v_th=v_th, v_reset=draw(st.sampled_from([-(2**27), -5, 0, 7, 2**27 - 1])), reset_mode=mode,
                              leak_alpha=draw(st.sampled_from([0, 1, 128, 230, 255, 256])), leak_beta=0)
        bias = rng.choice([2**28, -(2**28), 0, 3, -3], m).astype(np.int32) if draw(st.booleans()) else None
        k = draw(st.sampled_from([1, 3]))
        wmax = draw(st.sampled_from([2, 128]))
        layer = IntLayer(name=f"c{i}", kind="conv2d", source=src, mode="snn", weight=rng.integers(-wmax, wmax, (m, c, k, k)).astype(np.int8),
                         bias=bias, shift=draw(st.sampled_from([0, 1, 5, 16, 30, 31])), stride=1, padding=k // 2, neuron=neuron)
        layers.append(layer)
        src, c = layer.name, m
    return x, layers, draw(st.integers(1, 5))


@pytest.mark.parametrize("path", VEC_PATHS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fast_lif_case())
def test_chain_fast_lif_range_equals_reference(path, case):
    """The fused fast LIF soma (AVX2 8 lanes, AVX-512 16 lanes on the avx512vnni path) equals
    run_reference at its edges, on 1-3 threads and blocks of 1-5 steps (the stages of different
    blocks overlapping on the threads)."""
    x, layers, block = case
    _check_chain(x, layers, [0, 0, 0], path, block_steps=block)


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("last_m,last_mode", [(1, "ann"), (16, "snn"), (3, "ann"), (8, "snn")])
def test_chain_of_the_reference_shapes_with_saturation_edges(path, last_m, last_mode):
    """The reference network's SNN branch shapes (2 -> 8 7x7/2, pool 2, 8 -> 16, 16 -> 16, last
    stage 3x3) with int16 sums at their limit: fan-in 2*7*7 = 98 and 144 of -128 / 127 weights on
    all-one spikes (sum_k |w| <= 32767: 98 * 128 = 12544, 16*9 * 127 = 18288), int32 extreme
    biases, and the rows of 16 (plane_few masks from the bit image in blocks of 16 + a tail)."""
    rng = np.random.default_rng(last_m)
    x = (rng.random((6, 2, 36, 34)) < 0.5).astype(np.int8)
    x[0] = 1  # all-one step: every accumulator at its sum of weights
    neuron = IntLIFParams(v_th=64, v_reset=0, reset_mode="subtract", leak_alpha=230)
    def conv(name, src, cin, cout, k, s, p, mode, wval=None):
        wt = rng.integers(-128, 128, (cout, cin, k, k)).astype(np.int8) if wval is None else np.full((cout, cin, k, k), wval, np.int8)
        b = rng.choice([2**31 - 1, -(2**31), 5, -5], cout).astype(np.int32)
        if mode == "ann":
            return IntLayer(name=name, kind="conv2d", source=src, mode="ann", weight=wt, bias=b, shift=3, stride=s,
                            padding=p, activation="none")
        return IntLayer(name=name, kind="conv2d", source=src, mode="snn", weight=wt, bias=b, shift=4, stride=s,
                        padding=p, neuron=neuron)
    layers = [conv("c0", "x", 2, 8, 7, 2, 3, "snn", -128), IntLayer(name="p1", kind="maxpool", source="c0", kernel=2),
              conv("c1", "p1", 8, 16, 3, 1, 1, "snn"), conv("c2", "c1", 16, 16, 3, 1, 1, "snn", 127),
              conv("c3", "c2", 16, last_m, 3, 1, 1, last_mode)]
    run = _check_chain(x, layers, [0, 2, 0, 0], path)
    assert run is not None and run.out_counts[1].sum() > 0


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("mid,last_m,wd", [(24, 1, 21), (32, 3, 16), (64, 1, 35)])
def test_chain_with_wide_middle_stages(path, mid, last_m, wd):
    """Middle stages of 24, 32 and 64 channels (3, 4 and 8 image bytes per pixel: the lut's
    generic and table-major passes, the last stage's masks gathered byte by byte), rows that are
    and are not multiples of 16."""
    rng = np.random.default_rng(mid + wd)
    x = (rng.random((5, 2, 14, wd)) < 0.3).astype(np.int8)
    neuron = IntLIFParams(v_th=30, reset_mode="subtract", leak_alpha=220)
    layers = [IntLayer(name="c0", kind="conv2d", source="x", mode="snn", weight=rng.integers(-40, 40, (mid, 2, 3, 3)).astype(np.int8),
                       bias=rng.integers(-50, 50, mid).astype(np.int32), shift=1, stride=1, padding=1, neuron=neuron),
              IntLayer(name="c1", kind="conv2d", source="c0", mode="snn", weight=rng.integers(-20, 20, (mid, mid, 3, 3)).astype(np.int8),
                       bias=None, shift=2, stride=1, padding=1, neuron=neuron),
              IntLayer(name="c2", kind="conv2d", source="c1", mode="ann", weight=rng.integers(-30, 30, (last_m, mid, 3, 3)).astype(np.int8),
                       bias=rng.integers(-50, 50, last_m).astype(np.int32), shift=3, stride=1, padding=1, activation="none")]
    run = _check_chain(x, layers, [0, 0, 0], path)
    assert run is not None and 0 < run.out_counts[1].sum() < run.out_counts[1].size * x.shape[0]


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("c,wd,k,pad", [(8, 16, 3, 1), (16, 21, 3, 1), (8, 35, 5, 2), (16, 40, 1, 0)])
def test_chain_correlation_head_from_the_bit_image(path, c, wd, k, pad):
    """A last stage of one output channel on 8 or 16 input channels (on avx512vnni and amx its
    sums are vpdpbusd of the bit image's bytes expanded under a mask, 4 or 8 pixels per register):
    rows that are and are not multiples of 16, kernels 1, 3 and 5, and the int16 sums at their
    limit (weights of -128 where every spike is 1)."""
    rng = np.random.default_rng(c * 100 + wd)
    x = (rng.random((4, 2, 12, wd)) < 0.3).astype(np.int8)
    x[0] = 1
    neuron = IntLIFParams(v_th=20, reset_mode="subtract", leak_alpha=200)
    head = rng.integers(-128, 128, (1, c, k, k)).astype(np.int8)
    head[0, : c // 2] = -128
    layers = [IntLayer(name="c0", kind="conv2d", source="x", mode="snn", weight=rng.integers(-30, 30, (c, 2, 3, 3)).astype(np.int8),
                       bias=rng.integers(-20, 20, c).astype(np.int32), shift=0, stride=1, padding=1, neuron=neuron),
              IntLayer(name="c1", kind="conv2d", source="c0", mode="ann", weight=head, bias=np.array([7], np.int32), shift=6,
                       stride=1, padding=pad, activation="none")]
    run = _check_chain(x, layers, [0, 0], path)
    assert run is not None and 0 < run.out_counts[0].sum() < run.out_counts[0].size * x.shape[0]


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("m,wd", [(8, 70), (16, 64), (24, 70)])
def test_chain_pools_wide_rows(path, m, wd):
    """A 2 x 2 pool between stages on rows of 32 and 35 pooled pixels (16 at a time, then the
    rest, for 8-channel pixels) and its counts from the image bytes (8 bytes per 64-bit mask on
    the AVX-512 paths, the rest byte by byte) for pixels of 1, 2 and 3 bytes."""
    rng = np.random.default_rng(m + wd)
    x = (rng.random((3, 2, 10, wd)) < 0.3).astype(np.int8)
    neuron = IntLIFParams(v_th=10, reset_mode="subtract", leak_alpha=220)
    def snn(name, src, cin, cout):
        return IntLayer(name=name, kind="conv2d", source=src, mode="snn", weight=rng.integers(-30, 40, (cout, cin, 3, 3)).astype(np.int8),
                        bias=rng.integers(-5, 5, cout).astype(np.int32), shift=0, stride=1, padding=1, neuron=neuron)
    layers = [snn("c0", "x", 2, m), IntLayer(name="p1", kind="maxpool", source="c0", kernel=2), snn("c1", "p1", m, 8),
              snn("c2", "c1", 8, 1)]
    run = _check_chain(x, layers, [0, 2, 0], path)
    assert run is not None and 0 < run.pool_counts[1].sum() < run.pool_counts[1].size * x.shape[0]


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("alpha,mode,v_th,drive", [(0, "subtract", 64, 1000), (100, "value", 64, 1000),
                                                   (128, "subtract", 64, 1000), (230, "subtract", 64, 1000),
                                                   (230, "subtract", 64, 1400), (255, "value", 5, 1000),
                                                   (256, "subtract", 3000, 1000)])
def test_chain_int16_membrane_at_its_bound(path, alpha, mode, v_th, drive):
    """Stages whose membrane provably stays inside int16 (on avx512vnni and amx the chain then runs
    the LIF 32 neurons per instruction on an int16 membrane) driven to the edge of that bound: all-one
    inputs against weights of +127 (or -127) and biases of +-1000 put the current of every step at
    its largest, and 60 steps take the membrane close to its fixed point (|u| up to about 32,400 at
    alpha 230, against the int16 limit of 32,767; with +-1400 it would pass the limit, so the bound
    must refuse int16 there); each leak form (alpha 0 and 100 by one multiply,
    128 by a shift, 230 as u + floor(-u (256 - alpha) / 256)); alpha 255 and 256, where the bound
    does not close, run the int32 membrane; rows of 40 neurons (a masked tail)."""
    rng = np.random.default_rng(alpha)
    x = np.ones((60, 2, 5, 5), np.int8)
    x[30:] = rng.random((30, 2, 5, 5)) < 0.5
    neuron = IntLIFParams(v_th=v_th, v_reset=-7, reset_mode=mode, leak_alpha=alpha)
    w0 = np.full((8, 2, 3, 3), 127, np.int8)
    w0[4:] = -127
    w0[2] = rng.integers(-127, 128, (2, 3, 3))
    bias = np.array([drive, 3, -3, 5, -drive, 3, -3, 5], np.int32)
    layers = [IntLayer(name="c0", kind="conv2d", source="x", mode="snn", weight=w0, bias=bias, shift=0, stride=1,
                       padding=1, neuron=neuron),
              IntLayer(name="c1", kind="conv2d", source="c0", mode="snn", weight=rng.integers(-60, 60, (16, 8, 3, 3)).astype(np.int8),
                       bias=None, shift=1, stride=1, padding=1, neuron=neuron),
              IntLayer(name="c2", kind="conv2d", source="c1", mode="snn", weight=rng.integers(-60, 60, (1, 16, 3, 3)).astype(np.int8),
                       bias=np.array([4], np.int32), shift=2, stride=1, padding=1, neuron=neuron)]
    run = _check_chain(x, layers, [0, 0, 0], path, threads=(1, 2))
    assert run is not None and 0 < run.out_counts[0].sum() < run.out_counts[0].size * x.shape[0]


@pytest.mark.parametrize("path", VEC_PATHS)
def test_chain_counts_past_255_steps(path):
    """600 steps: the byte counters of every stage's outputs and of the pooled value are flushed
    every 255 steps (counts above 255 per neuron must survive)."""
    rng = np.random.default_rng(5)
    x = (rng.random((600, 1, 8, 8)) < 0.7).astype(np.int8)
    neuron = IntLIFParams(v_th=0, reset_mode="value", v_reset=0, leak_alpha=256)
    layers = [IntLayer(name="c0", kind="conv2d", source="x", mode="snn", weight=rng.integers(1, 9, (8, 1, 3, 3)).astype(np.int8),
                       bias=None, shift=0, stride=1, padding=1, neuron=neuron),
              IntLayer(name="p1", kind="maxpool", source="c0", kernel=2),
              IntLayer(name="c1", kind="conv2d", source="p1", mode="snn", weight=rng.integers(-3, 9, (8, 8, 2, 2)).astype(np.int8),
                       bias=None, shift=0, stride=1, padding=1, neuron=neuron)]
    run = _check_chain(x, layers, [0, 2], path)
    assert run.out_counts[0].max() > 255 and run.pool_counts[1].max() > 255


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("threads", [4, 9])
def test_chain_with_more_threads_than_rows_and_pool_aligned_bands(path, threads):
    """More threads than a stage has rows (bands are clipped to the rows; one band per row at most),
    band boundaries at multiples of the next stage's pool (3 here, 22 rows -> 7 pooled rows of 3
    and a dropped last row), and 300 steps (two blocks of steps, counters flushed per band)."""
    rng = np.random.default_rng(threads)
    x = (rng.random((300, 2, 22, 19)) < 0.3).astype(np.int8)
    layers = _chain_layers(rng, k0=3, stride0=1, shift0=0, pool=3, leak_alpha=240, low1=-20, activation="relu")
    run = _check_chain(x, layers, [0, 3, 0], path, threads=(1, threads))
    assert 0 < run.out_counts[1].sum() < run.out_counts[1].size * x.shape[0] and run.out.any()
    _check_chain(x[:40], layers, [0, 3, 0], path, threads=(1, threads), block_steps=7)  # 6 blocks, the last of 5 steps


@pytest.mark.parametrize("path", VEC_PATHS)
def test_chain_in_small_blocks_of_steps(path):
    """Blocks of 1, 3 and 8 steps (layer after layer within each block, the LIF state carried
    across blocks) on 1 and 2 threads equal run_reference."""
    x, layers, pools = _small_chain(4)
    for block in (1, 3, 8):
        _check_chain(x[:17], layers, pools, path, threads=(1, 2), block_steps=block)


def test_chain_declines_inputs_that_are_not_spikes_and_bad_stages():
    rng = np.random.default_rng(3)
    x = (rng.random((2, 2, 10, 10)) < 0.3).astype(np.int8)
    a = IntLayer(name="a", kind="conv2d", source="x", mode="snn", weight=rng.integers(-9, 9, (8, 2, 3, 3)).astype(np.int8),
                 bias=None, shift=0, stride=1, padding=1, neuron=IntLIFParams(v_th=5))
    b = IntLayer(name="b", kind="conv2d", source="a", mode="ann", weight=rng.integers(-9, 9, (3, 8, 3, 3)).astype(np.int8),
                 bias=None, shift=0, stride=1, padding=1, activation="relu")
    x2 = x.copy()
    x2[1, 0, 9, 9] = 2
    assert kernels.snn_chain(x2, [_call(a), _call(b)], [0, 0]) is None
    assert kernels.snn_chain(x, [_call(a), _call(b)], [0, 0]) is not None
    with pytest.raises(kernels.ParameterError):
        kernels.snn_chain(x, [_call(a), _call(b)], [0, 0], threads=-1)
    with pytest.raises(kernels.ParameterError):
        kernels.snn_chain(x, [_call(a), _call(b)], [0, 0], block_steps=-2)
    empty = kernels.snn_chain(x[:0], [_call(a), _call(b)], [0, 0], threads=2)  # no steps: nothing to do
    assert empty.out.shape == (0, 3, 10, 10) and not empty.in_count.any()
    assert not any(c.any() for c in empty.out_counts)  # (the run clears its counts: no steps, all zero)
    with pytest.raises(kernels.ParameterError):
        kernels.snn_chain(x, [_call(b), _call(a)], [0, 0])  # an ANN stage before the last
    with pytest.raises(kernels.ParameterError):
        kernels.snn_chain(x, [_call(a), _call(b)], [2, 0])  # a pool before the first stage


def test_kept_chain_tables_are_refused_for_other_weights_or_chains():
    """ChainTables made for one chain's weights are refused (ValueError) by a run with other
    weights arrays or another number of stages, never used silently."""
    rng = np.random.default_rng(3)
    x = (rng.random((3, 8, 10, 10)) < 0.3).astype(np.int8)
    a = IntLayer(name="a", kind="conv2d", source="x", mode="snn", weight=rng.integers(-20, 20, (16, 8, 3, 3)).astype(np.int8),
                 bias=None, shift=0, stride=1, padding=1, neuron=IntLIFParams(v_th=60))
    b = IntLayer(name="b", kind="conv2d", source="a", mode="snn", weight=rng.integers(-20, 20, (16, 16, 3, 3)).astype(np.int8),
                 bias=None, shift=0, stride=1, padding=1, neuron=IntLIFParams(v_th=60))
    spec = kernels.ChainSpec.make(x.shape[1:], [_call(a), _call(b)], [0, 0], keep_tables=True)
    assert spec.run(x, 1) is not None  # (stage b runs on lut tables: made here)
    copies = [kernels.LayerCall(c.weight.copy(), c.bias, c.lut, c.params) for c in (_call(a), _call(b))]
    other = kernels.ChainSpec.make(x.shape[1:], copies, [0, 0])  # the same values in other arrays
    args = other.args(x, other.run_buffers(x.shape[0]))
    with pytest.raises(ValueError, match="other weights"):
        kernels._k.snn_chain(*args, 1, 0, other.first, spec.tables)
    with pytest.raises(ValueError, match="another chain"):
        kernels._k.snn_chain(*args, 1, 0, other.first, kernels._k.ChainTables(3))


@pytest.mark.skipif("avx512vnni" not in kernels.available_paths(), reason="this CPU has no avx512vnni")
@pytest.mark.parametrize("w", [63, 64, 65, 100])
@pytest.mark.parametrize("m,k,stride,pad", [(8, 7, 2, 3), (16, 5, 1, 0), (8, 3, 3, 1)])
def test_rows_first_stage_around_a_64_pixel_row(w, m, k, stride, pad):
    """The VNNI rows build a row of at most 64 pixels' quads straight from the input (one masked
    vpermb each) and copy a longer row into a padded buffer first: both, at and around the edge,
    with padding, strides 1-3 and the input's last columns under the kernel, equal run_reference."""
    if not kernels.chain_rows_available(_call(IntLayer(name="c0", kind="conv2d", source="x", mode="snn",
                                                       weight=np.zeros((m, 2, k, k), np.int8), stride=stride,
                                                       padding=pad, neuron=IntLIFParams(v_th=64))), "avx512vnni"):
        pytest.skip("the rows need AVX-512 VBMI")
    rng = np.random.default_rng(w * 100 + m + k)
    x = (rng.random((4, 2, 9, w)) < 0.3).astype(np.int8)
    x[1, :, :, -1] = 1  # the last column: past a full zmm where w > 64
    neuron = IntLIFParams(v_th=64, v_reset=0, reset_mode="subtract", leak_alpha=230)
    layers = [IntLayer(name="c0", kind="conv2d", source="x", mode="snn",
                       weight=rng.integers(-128, 128, (m, 2, k, k)).astype(np.int8), bias=np.full(m, 5, np.int32),
                       shift=2, stride=stride, padding=pad, neuron=neuron),
              IntLayer(name="c1", kind="conv2d", source="c0", mode="ann",
                       weight=rng.integers(-128, 128, (3, m, 3, 3)).astype(np.int8), bias=None, shift=3, stride=1,
                       padding=1, activation="none")]
    run = _check_chain(x, layers, [0, 0], "avx512vnni", threads=(1, 2))
    assert run is not None and run.out_counts[0].sum() > 0


def test_rows_first_stage_is_refused_where_it_cannot_run():
    """first_stage='rows' needs the avx512vnni / amx path, AVX-512 VBMI, M in {8, 16}, stride <= 4,
    kw <= 16; elsewhere a ParameterError, and a bad name is one too (SimOptions checks it at compile)."""
    rng = np.random.default_rng(4)
    x = (rng.random((2, 2, 12, 12)) < 0.3).astype(np.int8)

    def snn(m, k=3, stride=1):
        return _call(IntLayer(name="a", kind="conv2d", source="x", mode="snn", weight=rng.integers(-9, 9, (m, 2, k, k)).astype(np.int8),
                              bias=None, shift=0, stride=stride, padding=1, neuron=IntLIFParams(v_th=5)))

    with pytest.raises(kernels.ParameterError, match="first_stage must be one of"):
        kernels.snn_chain(x, [snn(8)], [0], first_stage="dense")
    for call, path in [(snn(8), "avx2"), (snn(24), "avx512vnni"), (snn(8, k=3, stride=5), "avx512vnni")]:
        if path not in kernels.available_paths():
            continue
        assert not kernels.chain_rows_available(call, path)
        with pytest.raises(kernels.ParameterError, match="first_stage='rows' needs"):
            kernels.snn_chain(x, [call], [0], path=path, first_stage="rows")
        assert kernels.snn_chain(x, [call], [0], path=path, first_stage="spans") is not None
    mapping = map_network(build_reference(seed=2), load_chip("tianjic"))
    with pytest.raises(kernels.ParameterError, match="chain_first_stage"):
        sim_mod.compile(mapping, sim_mod.SimOptions(chain_first_stage="dense"))
    if "avx2" in kernels.available_paths():
        with pytest.raises(kernels.ParameterError, match="first_stage='rows' needs"):
            sim_mod.compile(mapping, sim_mod.SimOptions(path="avx2", chain_first_stage="rows"))


@pytest.mark.parametrize("first_stage", ["spans", "rows"])
def test_simulate_with_each_first_stage_equals_reference(first_stage):
    """The reference network's chain with its first stage forced to spans or VNNI rows (where this
    CPU has them), on 2 threads, at an activity where auto would take the other one for rows (5 %)
    and at 30 %: outputs equal run_reference."""
    net = build_reference(seed=3)
    mapping = map_network(net, load_chip("tianjic"))
    path = "avx512vnni" if first_stage == "rows" else None
    if first_stage == "rows":
        if "avx512vnni" not in kernels.available_paths():
            pytest.skip("this CPU has no AVX-512 VNNI (the rows first stage)")
        first = sim_mod.compile(mapping, sim_mod.SimOptions(path=path)).chains["snn_conv1"].calls[0]
        if not kernels.chain_rows_available(first, path):
            pytest.skip("this CPU has no AVX-512 VBMI (the rows first stage)")
    plan = sim_mod.compile(mapping, sim_mod.SimOptions(path=path, threads=2, chain_first_stage=first_stage))
    for activity in (0.05, 0.3):
        x = synthetic_inputs(net, frames=2, seed=6, activity=activity)
        ref = run_reference(net, x)
        sim = simulate(plan, x)
        for k, v in ref.items():
            np.testing.assert_array_equal(sim.outputs[k], v, err_msg=f"{k} activity={activity}")


def _sims(mapping, x, threads):
    return {flag: simulate(sim_mod.compile(mapping, sim_mod.SimOptions(chains=flag, threads=threads)), x)
            for flag in (True, False)}


def _check_chain_runs(runs, ref):
    """Both paths' outputs equal run_reference; the per-core active inputs, route packets and 0/1
    flags of the chain path equal the layer-by-layer path's."""
    for flag, sim in runs.items():
        for k, v in ref.items():
            np.testing.assert_array_equal(sim.outputs[k], v, err_msg=f"{k} chain={flag}")
    np.testing.assert_array_equal(runs[True].active_inputs, runs[False].active_inputs)
    np.testing.assert_array_equal(runs[True].route_packets, runs[False].route_packets)
    assert runs[True].binary == runs[False].binary


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_simulate_chain_path_equals_layer_path_and_reference(threads):
    """The reference network: the SNN branch runs as one chain (snn_conv1 -> pool -> snn_conv2 ->
    snn_conv3 -> snn_xcorr); outputs equal run_reference, and the per-core active inputs, route
    packets and 0/1 flags equal those of the layer-by-layer path."""
    net = build_reference(seed=2)
    mapping = map_network(net, load_chip("tianjic"))
    chains = sim_mod.compile(mapping).chains
    assert list(chains) == ["snn_conv1"]
    assert chains["snn_conv1"].names == ("snn_conv1", "snn_pool", "snn_conv2", "snn_conv3", "snn_xcorr")
    x = synthetic_inputs(net, frames=2, seed=5, activity=0.15)
    ref = run_reference(net, x)
    runs = _sims(mapping, x, threads)
    _check_chain_runs(runs, ref)
    assert runs[True].active_inputs.sum() > 0


def test_simulate_falls_back_when_the_chain_input_is_not_spikes():
    net = build_reference(seed=1)
    mapping = map_network(net, load_chip("tianjic"))
    x = synthetic_inputs(net, frames=1, seed=2)
    x["events"] = x["events"].copy()
    x["events"][3, 1, 5, 7] = 3  # not 0/1: the chain declines, the layers run one by one
    ref = run_reference(net, x)
    runs = _sims(mapping, x, 1)
    _check_chain_runs(runs, ref)
    assert runs[True].binary["events"] is False


def test_chain_stops_at_values_used_elsewhere():
    """A value that is a network output or feeds two layers ends the chain there (it must be
    materialized); the shorter chain still equals the reference."""
    rng = np.random.default_rng(7)
    neuron = IntLIFParams(v_th=20, leak_alpha=200)
    def snn(name, src, cin, cout):
        return IntLayer(name=name, kind="conv2d", source=src, mode="snn", weight=rng.integers(-30, 30, (cout, cin, 3, 3)).astype(np.int8),
                        bias=None, shift=1, stride=1, padding=1, neuron=neuron)
    layers = [snn("a", "ev", 2, 8), snn("b", "a", 8, 8), snn("c", "b", 8, 8), snn("d", "b", 8, 8), snn("e", "d", 8, 16),
              snn("f", "e", 16, 8)]
    net = IntNetwork("branchy", {"ev": InputSpec((2, 12, 12), 0, 4)}, layers, ["c", "f", "e"])
    mapping = map_network(net, load_chip("tianjic"))
    chains = sim_mod.compile(mapping).chains
    # b feeds c and d: the chain a -> b ends at b; d -> e ends at e (a network output); f stands alone
    assert {k: v.names for k, v in chains.items()} == {"a": ("a", "b"), "d": ("d", "e")}
    x = {"ev": (rng.random((8, 2, 12, 12)) < 0.3).astype(np.int8)}
    ref = run_reference(net, x)
    runs = _sims(mapping, x, 1)
    _check_chain_runs(runs, ref)


def _chain_layers(rng, k0: int, stride0: int, shift0: int, pool: int, leak_alpha: int, low1: int, activation: str) -> list:
    """SNN conv (8 ch, k0×k0) → max pool → SNN conv (16 ch, 3×3, bias) → ANN conv (1 ch, 3×3)."""
    neuron = IntLIFParams(v_th=40, reset_mode="subtract", leak_alpha=leak_alpha)
    return [IntLayer(name="c0", kind="conv2d", source="x", mode="snn", weight=rng.integers(low1 - 10, 40, (8, 2, k0, k0)).astype(np.int8),
                     bias=None, shift=shift0, stride=stride0, padding=k0 // 2, neuron=neuron),
            IntLayer(name="p1", kind="maxpool", source="c0", kernel=pool),
            IntLayer(name="c1", kind="conv2d", source="p1", mode="snn", weight=rng.integers(low1, 40, (16, 8, 3, 3)).astype(np.int8),
                     bias=rng.integers(-9, 9, 16).astype(np.int32), shift=1, stride=1, padding=1, neuron=neuron),
            IntLayer(name="c2", kind="conv2d", source="c1", mode="ann", weight=rng.integers(-30, 30, (1, 16, 3, 3)).astype(np.int8),
                     bias=None, shift=2, stride=1, padding=1, activation=activation)]


def _small_chain(seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((40, 2, 20, 18)) < 0.2).astype(np.int8)
    return x, _chain_layers(rng, k0=5, stride0=2, shift0=1, pool=2, leak_alpha=230, low1=-30, activation="none"), [0, 2, 0]


def _threads_alive() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize("path", VEC_PATHS)
@pytest.mark.parametrize("threads,helpers", [(2, 0), (2, 1), (3, 2), (3, 1), (1, 1)])
def test_chain_started_beside_the_caller_equals_reference(path, threads, helpers):
    """snn_chain_start: helpers (threads of the C++ pool) work on the chain while the caller does
    something else, then the caller joins the team; the result equals run_reference (outputs and
    counts), and the job leaves no new thread behind (the pool's threads are reused)."""
    x, layers, pools = _small_chain(threads * 10 + helpers)
    net = IntNetwork("chain", {"x": InputSpec(x.shape[1:], 0, x.shape[0])}, layers, [l.name for l in layers])
    ref = run_reference(net, {"x": x})
    convs = [l for l in layers if l.kind == "conv2d"]
    kernels.snn_chain_start(x, [_call(l) for l in convs], pools, threads=threads, helpers=helpers).join()  # (pool threads)
    before = _threads_alive()
    with kernels.use_path(path):
        job = kernels.snn_chain_start(x, [_call(l) for l in convs], pools, threads=threads, helpers=helpers)
        busy = sum(range(100_000))  # the caller's other work
        run = job.join()
    assert busy and _threads_alive() <= before  # (threads of earlier tests may still be ending)
    np.testing.assert_array_equal(run.out, ref["c2"])
    np.testing.assert_array_equal(run.in_count, np.count_nonzero(x, axis=0))
    np.testing.assert_array_equal(run.pool_counts[1], np.count_nonzero(ref["p1"], axis=0))
    for i, l in enumerate(convs):
        np.testing.assert_array_equal(run.out_counts[i], np.count_nonzero(ref[l.name], axis=0), err_msg=l.name)


def test_chain_job_declines_and_is_joined_when_dropped():
    x, layers, pools = _small_chain(1)
    convs = [_call(l) for l in layers if l.kind == "conv2d"]
    kernels.snn_chain_start(x, convs, pools, threads=3).join()  # (the C++ pool starts its threads on first use)
    before = _threads_alive()
    bad = x.copy()
    bad[-1, 0, 0, 0] = 2  # not 0/1 (the last step): the whole job declines
    assert kernels.snn_chain_start(bad, convs, pools, threads=2).join() is None
    job = kernels.snn_chain_start(x, convs, pools, threads=3)
    del job  # never joined: dropping it waits for its threads (they read arrays it keeps alive)
    assert _threads_alive() <= before  # (threads of earlier tests may still be ending)
    with pytest.raises(kernels.ParameterError):
        kernels.snn_chain_start(x, convs, pools, threads=2, helpers=-1)
