"""The C++ chip kernels agree bit for bit with the Python integer definition, on every path.

References: neurosim.intmath (mac, requantize) and neurosim.intneuron (int_lif_step), written
independently of the kernels. Random shapes and values (hypothesis), saturation edges included.
The VNNI paths are tested only on CPUs that have them.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from chip_models import kernels
from neurosim import intmath
from neurosim.intneuron import RESET_MODES, IntLIFParams, IntLIFState, int_lif_step

MAC_PATHS = [
    pytest.param(p, marks=pytest.mark.skipif(p not in kernels.available_paths(), reason=f"this CPU has no {p}"))
    for p in kernels.PATHS
]
# Non-MAC kernels have two bodies: scalar and vector (AVX2); the VNNI paths reuse the vector one.
VEC_PATHS = MAC_PATHS[:2]

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
I8 = st.integers(-128, 127)
I32 = st.integers(-(2**31), 2**31 - 1)


@st.composite
def mac_case(draw, max_k=300):
    n, k, m = draw(st.integers(1, 7)), draw(st.integers(1, max_k)), draw(st.integers(1, 70))
    x = draw(arrays(np.int8, (n, k), elements=I8))
    w = draw(arrays(np.int8, (m, k), elements=I8))
    bias = draw(st.none() | arrays(np.int32, (m,), elements=I32))
    return x, w, bias


@pytest.mark.parametrize("path", MAC_PATHS)
@SETTINGS
@given(case=mac_case())
def test_dense_mac_matches_intmath(path, case):
    x, w, bias = case
    with kernels.use_path(path):
        out = kernels.dense_mac(x, w, bias)
    np.testing.assert_array_equal(out, intmath.mac(x, w, bias))


@pytest.mark.parametrize("path", MAC_PATHS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dense_mac_tiles_and_k_chunks(path, data):
    """Shapes around the micro-kernels' tiles (rows not a multiple of 6, columns past a 64-column
    panel) and K from 500 to 2100 (one chunk of the VNNI-512 driver)."""
    n, k, m = data.draw(st.integers(1, 20)), data.draw(st.integers(500, 2100)), data.draw(st.integers(1, 140))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w = rng.integers(-128, 128, (m, k)).astype(np.int8)
    bias = rng.integers(-(2**31), 2**31, m).astype(np.int32)
    with kernels.use_path(path):
        out = kernels.dense_mac(x, w, bias)
    np.testing.assert_array_equal(out, intmath.mac(x, w, bias))


@pytest.mark.parametrize("path", MAC_PATHS)
@pytest.mark.parametrize("k", [4095, 4096, 4097, 8200, 9000])
def test_dense_mac_k_past_one_chunk(path, k):
    """K around the VNNI-512 driver's one-chunk limit (4096: one chunk goes straight through the
    output stage, more keep int32 partial sums between chunks), with rows across two 12-row blocks
    and a short tile, columns across two 64-column panels (the second one partial), extreme
    values and biases at the int32 edges: exact and saturated like intmath.mac."""
    rng = np.random.default_rng(k)
    x = rng.integers(-128, 128, (17, k)).astype(np.int8)
    w = rng.integers(-128, 128, (70, k)).astype(np.int8)
    x[0], w[0], w[1] = -128, -128, 127  # row 0: 2**14 * K against each
    bias = rng.integers(-(2**31), 2**31, 70).astype(np.int32)
    bias[:2] = 2**31 - 1, -(2**31)
    with kernels.use_path(path):
        out = kernels.dense_mac(x, w, bias)
    np.testing.assert_array_equal(out, intmath.mac(x, w, bias))


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(case=mac_case(), density=st.floats(0, 1))
def test_spike_accumulate_matches_intmath(path, case, density):
    x, w, bias = case
    x = np.where(np.random.default_rng(x.size).random(x.shape) < density, x, 0).astype(np.int8)
    with kernels.use_path(path):
        out, active = kernels.spike_accumulate(x, np.ascontiguousarray(w.T), bias)
        spikes = (x != 0).astype(np.int8)
        out_s, active_s = kernels.spike_accumulate(spikes, np.ascontiguousarray(w.T), bias)
    np.testing.assert_array_equal(out, intmath.mac(x, w, bias))
    np.testing.assert_array_equal(out_s, intmath.mac(spikes, w, bias))
    assert active == active_s == np.count_nonzero(x)


@pytest.mark.parametrize("path", MAC_PATHS)
@SETTINGS
@given(case=mac_case(max_k=700))
def test_dense_mac_non_negative_inputs_match_intmath(path, case):
    """Non-negative inputs (ReLU outputs, spikes, frames) take the u8 × s8 vpmaddubsw kernel on
    AVX2: exact because a pair of products is at most 2·127·128 = 32512 < 2**15."""
    x, w, bias = case
    x = np.where(x < 0, x.astype(np.int16) + 128, x).astype(np.int8)  # 0..127, extremes kept
    x[0, : x.shape[1] // 2] = 127
    w[0] = -128
    with kernels.use_path(path):
        out = kernels.dense_mac(x, w, bias)
    np.testing.assert_array_equal(out, intmath.mac(x, w, bias))


@pytest.mark.parametrize("path", MAC_PATHS)
def test_mac_extremes_and_chunked_fan_in(path):
    """All -128·-128 products at K = 65536 (2**30 per output) plus a bias that saturates int32,
    and K = 70000 (> one kernel chunk): exact and saturated like intmath.mac."""
    for k, xv in ((65536, -128), (70000, -128), (65536, 127), (70000, 127)):
        x = np.full((2, k), xv, np.int8)
        w = np.full((3, k), -128, np.int8)
        w[1] = 127
        bias = np.array([2**31 - 1, -(2**31), 12345], np.int32)
        with kernels.use_path(path):
            out = kernels.dense_mac(x, w, bias)
            if path in ("scalar", "avx2"):
                out_s, _ = kernels.spike_accumulate(x, np.ascontiguousarray(w.T), bias)
                np.testing.assert_array_equal(out_s, intmath.mac(x, w, bias))
        np.testing.assert_array_equal(out, intmath.mac(x, w, bias))


@st.composite
def lif_case(draw):
    lo, hi = intmath.int_range(intmath.MEMBRANE_BITS)
    mem = st.integers(lo, hi)
    p = IntLIFParams(
        v_th=draw(mem), v_reset=draw(mem), reset_mode=draw(st.sampled_from(RESET_MODES)), reset_constant=draw(mem),
        leak_alpha=draw(st.integers(0, 256)), leak_beta=draw(st.integers(-(2**20), 2**20) | mem),
        refractory_steps=draw(st.integers(0, 15)),
    )
    n, steps = draw(st.integers(1, 40)), draw(st.integers(1, 4))
    current = draw(arrays(np.int32, (steps, n), elements=I32 | st.integers(-300, 300)))
    v = draw(arrays(np.int32, (n,), elements=mem))
    counter = draw(arrays(np.int32, (n,), elements=st.integers(0, 15)))
    return p, current, v, counter


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(case=lif_case())
def test_lif_matches_intneuron(path, case):
    p, current, v, counter = case
    state = IntLIFState(v.astype(np.int64), counter.astype(np.int64))
    ref = []
    for c in current:
        s, state = int_lif_step(c, state, p)
        ref.append(s)
    with kernels.use_path(path):
        v1, c1 = v.copy(), counter.copy()
        spikes = np.stack([kernels.lif_step(c, v1, c1, p) for c in current])
        v2, c2 = v.copy(), counter.copy()
        spikes_run = kernels.lif_run(current, v2, c2, p)
    np.testing.assert_array_equal(spikes, np.stack(ref))
    np.testing.assert_array_equal(spikes_run, np.stack(ref))
    np.testing.assert_array_equal(v1, state.v)
    np.testing.assert_array_equal(c1, state.counter)
    np.testing.assert_array_equal(v2, state.v)


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(acc=arrays(np.int32, st.integers(1, 3000), elements=I32 | st.integers(-5000, 5000)),
       shift=st.integers(kernels.MIN_SHIFT, 40), activation=st.sampled_from(["none", "relu", "lut"]),
       lut=arrays(np.int8, (256,), elements=I8))
def test_output_and_current_stage_match_requantize(path, acc, shift, activation, lut):
    q = intmath.requantize(acc, shift, 8)
    expected = {"none": q, "relu": np.maximum(q, 0), "lut": lut.astype(np.int64)[q + 128]}[activation]
    with kernels.use_path(path):
        out = kernels.output_stage(acc, shift, activation, lut)
        cur = kernels.current_stage(acc, shift)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(cur, intmath.requantize(acc, shift, 32))


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(data=st.data())
def test_count_packets_counts_nonzeros_per_group(path, data):
    steps, n = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 200))
    values = data.draw(arrays(np.int8, (steps, n), elements=st.sampled_from([0, 0, 0, 1, -3, 127])))
    lens = data.draw(st.lists(st.integers(0, 50), min_size=0, max_size=12))
    idx = data.draw(arrays(np.int32, (sum(lens),), elements=st.integers(0, n - 1)))
    ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    with kernels.use_path(path):
        out = kernels.count_packets(values, ptr, idx)
    expected = [int((values[:, idx[a:b]] != 0).sum()) for a, b in zip(ptr[:-1], ptr[1:])]
    assert out.tolist() == expected


def test_set_path_rejects_unknown_and_unavailable():
    from neurosim.errors import ParameterError

    with pytest.raises(ParameterError, match="unknown"):
        kernels.set_path("neon")
    missing = [p for p in kernels.PATHS if p not in kernels.available_paths()]
    if missing:
        with pytest.raises(ParameterError, match="cannot run"):
            kernels.set_path(missing[0])
    assert kernels.get_path() in kernels.available_paths()


@st.composite
def conv_case(draw):
    c, m, k = draw(st.integers(1, 4)), draw(st.integers(1, 20)), draw(st.integers(1, 7))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    h, w = draw(st.integers(max(1, k - 2 * pad), 12)), draw(st.integers(max(1, k - 2 * pad), 12))
    steps = draw(st.integers(1, 3))
    x = draw(arrays(np.int8, (steps, c, h, w), elements=st.sampled_from([0, 0, 0, 0, 1, 1, -128, 127, 5])))
    wts = draw(arrays(np.int8, (m, c, k, k), elements=I8))
    bias = draw(st.none() | arrays(np.int32, (m,), elements=I32))
    return x, wts, bias, stride, pad


@pytest.mark.parametrize("path", VEC_PATHS)
@SETTINGS
@given(case=conv_case())
def test_conv_events_matches_im2col_mac(path, case):
    """Event-driven convolution = intmath.mac on intnet.im2col patches, per step."""
    from neurosim.intnet import im2col

    x, wts, bias, stride, pad = case
    ref, n_active = [], []
    for xt in x:
        cols, (ho, wo) = im2col(xt, wts.shape[2], wts.shape[3], stride, pad)
        ref.append(intmath.mac(cols, wts.reshape(wts.shape[0], -1), bias))
        n_active.append((cols != 0).sum(axis=1))
    with kernels.use_path(path):
        row_active = np.zeros((x.shape[0], ref[0].shape[0]), np.int64)
        out, active = kernels.conv_events(x, wts, bias, stride, pad, row_active=row_active)
    np.testing.assert_array_equal(out, np.stack(ref))
    np.testing.assert_array_equal(row_active, np.stack(n_active))
    assert active == np.count_nonzero(x)


@pytest.mark.parametrize("path", MAC_PATHS)
def test_explicit_path_argument_without_the_process_default(path):
    """``path=`` runs a kernel on that path whatever the process default is: the dense MAC
    (saturating bias edges, signed and non-negative inputs, a row-kernel M < 32 and a panel M)
    and the output stage equal intmath; packed weights refuse another path."""
    rng = np.random.default_rng(3)
    other = "scalar" if path != "scalar" else kernels.available_paths()[-1]
    for m in (5, 70):
        x = rng.integers(-128, 128, (9, 333)).astype(np.int8)
        w = rng.integers(-128, 128, (m, 333)).astype(np.int8)
        x[0], w[0] = -128, -128  # 333 · 2**14 plus a bias at the int32 edge: saturates
        bias = rng.integers(-(2**31), 2**31, m).astype(np.int32)
        bias[0] = 2**31 - 1
        with kernels.use_path(other):
            packed = kernels.pack(w, path)
            assert packed.path == path
            for xs in (x, np.abs(x.astype(np.int16)).clip(0, 127).astype(np.int8)):
                np.testing.assert_array_equal(kernels.dense_mac(xs, packed, bias, path=path), intmath.mac(xs, w, bias))
            if other != path:  # (a scalar-only build has one path)
                with pytest.raises(kernels.ParameterError, match="re-pack"):
                    kernels.dense_mac(x, packed, bias, path=other)
    acc = rng.integers(-(2**31), 2**31, 200).astype(np.int32)
    with kernels.use_path(other):
        np.testing.assert_array_equal(kernels.output_stage(acc, 7, "relu", path=path), intmath.requantize(acc, 7, 8).clip(0))


def test_vnni512_peak_probe_computes_its_closed_form_sum():
    """bench_chip's register-only vpdpbusd peak probe really executes its instructions: each round
    adds 4 · 1 · (−1) to every int32 lane, so after n rounds accumulator j (of 12) holds j − 4n in
    each of its 16 lanes; without AVX-512 VNNI it refuses by name."""
    from chip_models import _kernels

    n = 10
    if "avx512vnni" in kernels.available_paths():
        assert _kernels.vnni512_probe(n) == 16 * sum(j - 4 * n for j in range(12))
    else:
        with pytest.raises(Exception, match="AVX-512 VNNI"):
            _kernels.vnni512_probe(n)
