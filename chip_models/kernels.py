"""Thin Python wrappers of the C++ kernels (``chip_models._kernels``) and the path selection.

Each kernel is bit-exact with :mod:`neurosim.intmath` / :mod:`neurosim.intneuron`:

* :func:`dense_mac` — ``sat32(bias + x @ w.T)``, int8 ``x`` (N, K), ``w`` (M, K) → int32 (N, M).
* :func:`spike_accumulate` — the same sum over the *active* (nonzero) inputs only, reading the
  fan-out rows of ``wt`` (K, M) (event-driven, the work is proportional to the activity).
* :func:`lif_step` — one step of the integer LIF, in place on int32 ``v`` and ``counter``.
* :func:`output_stage` — ANN output: ``act(sat8(rounding_shift_right(acc, shift)))``.
* :func:`current_stage` — SNN input current: ``sat32(rounding_shift_right(acc, shift))``.
* :func:`conv_events` — event-driven convolution of spike maps (no im2col); :func:`im2col`.
* :func:`count_packets` — number of nonzero values per group (the router's spike packets).
* :func:`conv_layer` — a whole conv layer over all steps in one call; :func:`snn_chain` — a chain of
  spiking conv layers (with max pools) in one call, the spikes bit-packed between them.

Paths: ``"scalar"`` (portable C++), ``"avx2"`` (MAC: vpmaddwd on sign-extended int16, or the
exact u8 × s8 vpmaddubsw when all inputs are 0..127),
``"avx512vnni"`` / ``"avxvnni"`` (vpdpbusd for the MAC; the other kernels use their AVX2 code).
``"auto"`` picks the best this CPU has (``__builtin_cpu_supports``). Force one with
:func:`set_path` (or the ``NEUROSIM_CHIP_PATH`` environment variable); all paths give the
same bits. Arrays are passed to C++ as views (no copies) when they are already C-contiguous
of the right dtype.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

import numpy as np

from chip_models import _kernels as _k
from neurosim import intmath
from neurosim.errors import ParameterError
from neurosim.intneuron import IntLIFParams, RESET_MODES

PATHS = ("scalar", "avx2", "avx512vnni", "avxvnni", "amx")
_CODES = {name: getattr(_k.Path, name.upper()) for name in PATHS}  # the C++ enum (chip::Path)
K_CHUNK = intmath.MAX_FAN_IN  # fan-in per kernel call: 2**16 * 128 * 128 = 2**30 keeps every partial sum in int32
MIN_SHIFT = intmath.MIN_SHIFT  # left shifts up to 24 bits keep acc << shift exact in int64
ACTIVATIONS = {"none": _k.Soma.NONE, "relu": _k.Soma.RELU, "lut": _k.Soma.LUT}  # ANN somas (chip::Soma)


def _paths() -> tuple[str, ...]:
    f = _k.cpu_features()
    out = ["scalar"]
    if f["avx2"]:
        out.append("avx2")
        if f["avxvnni"]:
            out.append("avxvnni")
        if f["avx512vnni"]:
            out.append("avx512vnni")
        if f.get("amx"):
            out.append("amx")
    return tuple(out)


_PATHS = _paths()  # the CPU's features do not change while the process runs


def available_paths() -> list[str]:
    """The paths this CPU can run, slowest first."""
    return list(_PATHS)


def _best() -> str:
    # amx (the dense MAC on AMX-INT8 tiles; other kernels as avx2) is chosen only explicitly
    return [p for p in _PATHS if p != "amx"][-1]


_path = "auto"


def set_path(name: str) -> None:
    """Force a path (``"auto"`` restores the run-time choice); ParameterError if the CPU lacks it."""
    global _path
    if name != "auto" and name not in PATHS:
        raise ParameterError(f"kernel path {name!r} is unknown: use auto or one of {', '.join(PATHS)}")
    if name != "auto" and name not in available_paths():
        raise ParameterError(f"this CPU cannot run the {name} path: use one of {', '.join(available_paths())}")
    _path = name


def get_path() -> str:
    """The path in use (``auto`` resolved)."""
    return _best() if _path == "auto" else _path


@contextlib.contextmanager
def use_path(name: str) -> Iterator[None]:
    """Run a block with path ``name`` forced."""
    old = _path
    set_path(name)
    try:
        yield
    finally:
        set_path(old)


if os.environ.get("NEUROSIM_CHIP_PATH"):
    set_path(os.environ["NEUROSIM_CHIP_PATH"])


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_threads = 0  # 0: all CPUs (cpu_count())


def set_threads(n: int) -> None:
    """Threads of the layer kernels (:func:`conv_layer`): ``0`` = all CPUs (the default), ``1`` =
    one thread (no pool). ParameterError for a negative count. All counts give the same bits."""
    global _threads
    _threads = _valid_threads(n)


def _valid_threads(n) -> int:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"threads must be an integer >= 0 (0 = all CPUs), not {n!r}")
    return int(n)


def get_threads() -> int:
    """The thread count in use (``0`` resolved to :func:`cpu_count`)."""
    return _threads or cpu_count()


@contextlib.contextmanager
def use_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` kernel threads."""
    old = _threads
    set_threads(n)
    try:
        yield
    finally:
        set_threads(old)


if os.environ.get("NEUROSIM_CHIP_THREADS"):
    try:
        set_threads(int(os.environ["NEUROSIM_CHIP_THREADS"]))
    except ValueError:
        raise ParameterError("NEUROSIM_CHIP_THREADS must be an integer >= 0 (0 = all CPUs)") from None


def resolve_path(name: str | None = None) -> str:
    """A path name checked against this CPU: ``None`` = the process default (:func:`get_path`),
    ``"auto"`` = the best this CPU has; ParameterError for an unknown or unavailable path."""
    if name is None:
        return get_path()
    if name == "auto":
        return _best()
    if name not in PATHS:
        raise ParameterError(f"kernel path {name!r} is unknown: use auto or one of {', '.join(PATHS)}")
    if name not in _PATHS:
        raise ParameterError(f"this CPU cannot run the {name} path: use one of {', '.join(_PATHS)}")
    return name


_VECTOR_CODES = {p: _CODES["avx2" if p in ("avx512vnni", "avxvnni", "amx") else p] for p in PATHS}


def _code(path: str | None = None, vector_only: bool = False) -> int:
    """Path code for the C++ call (``path`` None: the process default); non-MAC kernels have
    scalar and AVX2 bodies only."""
    p = get_path() if path is None else path
    if p not in _PATHS:
        p = resolve_path(p)  # (raises)
    return _VECTOR_CODES[p] if vector_only else _CODES[p]


def _c(a: np.ndarray | None, dtype: type) -> np.ndarray | None:
    """``a`` as a C-contiguous array of ``dtype`` (a view when it already is one)."""
    if a is None:
        return None
    if type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous:
        return a  # (the common case, without numpy's argument parsing)
    return np.ascontiguousarray(a, dtype=dtype)

def _sat32(a: np.ndarray) -> np.ndarray:
    return np.clip(a, -(2**31), 2**31 - 1).astype(np.int32)


# ------------------------------------------------------------------------------ dense MAC


@dataclasses.dataclass
class DenseWeights:
    """int8 weights (M, K) packed once for the dense MAC of one path (chunks of K ≤ 65536)."""

    path: str
    shape: tuple[int, int]
    chunks: list  # PackedWeights per K chunk


def pack(w: np.ndarray, path: str | None = None) -> DenseWeights:
    """Pack int8 ``w`` (M, K) for ``path`` (default: the process default; int8 rows for AVX2,
    u8/s8 panels + row sums for VNNI and AMX)."""
    w = _c(w, np.int8)
    if w.ndim != 2:
        raise ParameterError(f"weights must be 2-D (M, K), got shape {w.shape}")
    path = resolve_path(path)
    chunks = [_k.pack_weights(np.ascontiguousarray(w[:, s : s + K_CHUNK]), _CODES[path])
              for s in range(0, max(w.shape[1], 1), K_CHUNK)]
    return DenseWeights(path, w.shape, chunks)


def _out(out: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if out is None:
        return np.empty(shape, np.int32)
    if out.dtype != np.int32 or out.shape != shape or not out.flags.c_contiguous:
        raise ParameterError(f"out must be a C-contiguous int32 array of shape {shape}")
    return out


def dense_mac(x: np.ndarray, w: np.ndarray | DenseWeights, bias: np.ndarray | None = None,
              out: np.ndarray | None = None, path: str | None = None) -> np.ndarray:
    """``sat32(bias + x @ w.T)``: int8 ``x`` (N, K), ``w`` (M, K) int8 or packed → int32 (N, M).

    Packed weights run on the path they were packed for; ``path`` (default: the process default)
    packs raw weights, and names the path packed ones must have. ``out`` (optional) receives the
    result in place (C-contiguous int32 (N, M))."""
    packed = w if isinstance(w, DenseWeights) else pack(w, path)
    want = resolve_path(path)
    if packed.path != want:
        raise ParameterError(f"weights were packed for the {packed.path} path, the path asked for is {want}: re-pack them")
    x = _c(x, np.int8)
    m, k = packed.shape
    if x.ndim != 2 or x.shape[1] != k:
        raise ParameterError(f"dense_mac: x has shape {x.shape}, expected (N, {k})")
    bias = _c(bias, np.int32)
    out = _out(out, (x.shape[0], m))
    if len(packed.chunks) == 1:
        _k.dense_mac(packed.chunks[0], x, bias, out)
        return out
    total = np.zeros((x.shape[0], m), np.int64) + (0 if bias is None else bias.astype(np.int64))
    for i, chunk in enumerate(packed.chunks):
        _k.dense_mac(chunk, np.ascontiguousarray(x[:, i * K_CHUNK : (i + 1) * K_CHUNK]), None, out)
        total += out
    out[...] = _sat32(total)
    return out


# ------------------------------------------------------------------ event-driven accumulation


def spike_accumulate(x: np.ndarray, wt: np.ndarray, bias: np.ndarray | None = None, out: np.ndarray | None = None,
                     row_active: np.ndarray | None = None, path: str | None = None) -> tuple[np.ndarray, int]:
    """Event-driven MAC: only nonzero ``x`` (N, K) read their fan-out row of ``wt`` (K, M).

    Returns (int32 (N, M) ``sat32(bias + x @ wt)``, number of active inputs). Synaptic
    operations done = active inputs × M. ``out`` receives the result in place; ``row_active``
    (int64 (N,), optional) the active count of every row.
    """
    x, wt, bias = _c(x, np.int8), _c(wt, np.int8), _c(bias, np.int32)
    if x.ndim != 2 or wt.ndim != 2 or x.shape[1] != wt.shape[0]:
        raise ParameterError(f"spike_accumulate: x {x.shape} and wt {wt.shape} do not match (N, K) x (K, M)")
    n, k = x.shape
    out = _out(out, (n, wt.shape[1]))
    code = _code(path, vector_only=True)
    if row_active is not None and (row_active.dtype != np.int64 or row_active.shape != (n,)):
        raise ParameterError(f"row_active must be an int64 array of shape ({n},)")
    if k <= K_CHUNK:
        return out, int(_k.spike_accumulate(x, wt, bias, out, code, row_active))
    total = np.zeros(out.shape, np.int64) + (0 if bias is None else bias.astype(np.int64))
    active = 0
    ra = None if row_active is None else np.zeros(n, np.int64)
    if row_active is not None:
        row_active[...] = 0
    for s in range(0, k, K_CHUNK):
        active += int(_k.spike_accumulate(np.ascontiguousarray(x[:, s : s + K_CHUNK]),
                                          np.ascontiguousarray(wt[s : s + K_CHUNK]), None, out, code, ra))
        total += out
        if row_active is not None:
            row_active += ra
    out[...] = _sat32(total)
    return out, active


@dataclasses.dataclass(frozen=True)
class ConvWeights:
    """Conv weights in the (C, kh, kw, M) fan-out layout of :func:`conv_events` (made by :func:`conv_weights`)."""

    fanout: np.ndarray


def conv_weights(w: np.ndarray) -> ConvWeights:
    """Conv weights (M, C, kh, kw) → the (C, kh, kw, M) fan-out layout of :func:`conv_events`."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise ParameterError(f"conv weights must be (M, C, kh, kw), got {w.shape}")
    return ConvWeights(np.ascontiguousarray(w.transpose(1, 2, 3, 0), dtype=np.int8))


def conv_events(x: np.ndarray, w: np.ndarray | ConvWeights, bias: np.ndarray | None, stride: int, padding: int,
                out: np.ndarray | None = None, row_active: np.ndarray | None = None,
                path: str | None = None) -> tuple[np.ndarray, int]:
    """Event-driven convolution: only active (nonzero) inputs of ``x`` (T, C, H, W) scatter
    ``x · w[:, c, dy, dx]`` into the outputs they reach.

    ``w``: int8 (M, C, kh, kw), or :func:`conv_weights` of it (transposed once, for reuse).
    Returns (int32 (T, Ho·Wo, M) = ``sat32(bias + conv)``, number of active inputs);
    ``row_active`` (int64 (T, Ho·Wo)) receives the active inputs seen by each output position.
    Equals im2col + :func:`dense_mac` bit for bit.
    """
    x = _c(x, np.int8)
    wt = (w if isinstance(w, ConvWeights) else conv_weights(w)).fanout
    if x.ndim != 4 or wt.shape[0] != x.shape[1]:
        raise ParameterError(f"conv_events: x {x.shape} and weights {wt.shape} do not match")
    c, kh, kw, m = wt.shape
    if c * kh * kw > K_CHUNK:
        raise ParameterError(f"conv_events: fan-in {c * kh * kw} exceeds {K_CHUNK}; split the input channels")
    t, _, h, wd = x.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    if out is None:
        out = np.empty((t, ho * wo, m), np.int32)
    active = _k.conv_events(x, wt, _c(bias, np.int32), out, int(stride), int(padding), _code(path, vector_only=True), row_active)
    return out, int(active)


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int,
           row_nonzero: np.ndarray | None = None) -> np.ndarray:
    """Patches of int8 ``x`` (T, C, H, W) → (Ho·Wo, T, C·kh·kw) in :func:`neurosim.intnet.im2col`
    order, position-major; ``row_nonzero`` (int64 (Ho·Wo, T)) receives the nonzeros per patch."""
    x = _c(x, np.int8)
    t, c, h, w = x.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    out = np.empty((ho * wo, t, c * kh * kw), np.int8)
    _k.im2col(x, int(kh), int(kw), int(stride), int(padding), out, row_nonzero)
    return out


# -------------------------------------------------------------------------------- soma


def lif_params(p: IntLIFParams) -> "_k.LIFParams":
    """``p`` as the C++ LIFParams (named fields; ``reset_mode`` as its index in RESET_MODES)."""
    return _k.LIFParams(v_th=p.v_th, v_reset=p.v_reset, reset_mode=RESET_MODES.index(p.reset_mode),
                        reset_constant=p.reset_constant, leak_alpha=p.leak_alpha, leak_beta=p.leak_beta,
                        refractory_steps=p.refractory_steps)


def lif_step(current: np.ndarray, v: np.ndarray, counter: np.ndarray, p: IntLIFParams,
             path: str | None = None) -> np.ndarray:
    """One integer LIF step in place on int32 ``v`` and ``counter`` (1-D); returns int8 spikes."""
    if v.dtype != np.int32 or counter.dtype != np.int32 or not (v.flags.c_contiguous and counter.flags.c_contiguous):
        raise ParameterError("lif_step: v and counter must be C-contiguous int32 arrays (they are updated in place)")
    current = _c(current, np.int32)
    spikes = np.empty(v.shape, np.int8)
    _k.lif_step(current.reshape(-1), v.reshape(-1), counter.reshape(-1), spikes.reshape(-1), lif_params(p),
                _code(path, vector_only=True))
    return spikes


def lif_run(current: np.ndarray, v: np.ndarray, counter: np.ndarray, p: IntLIFParams,
            path: str | None = None) -> np.ndarray:
    """``T`` LIF steps: ``current`` (T, n) int32; state (n,) int32 updated in place → int8 spikes (T, n)."""
    if v.dtype != np.int32 or counter.dtype != np.int32 or not (v.flags.c_contiguous and counter.flags.c_contiguous):
        raise ParameterError("lif_run: v and counter must be C-contiguous int32 arrays (they are updated in place)")
    current = _c(current, np.int32)
    spikes = np.empty(current.shape, np.int8)
    _k.lif_run(current, v, counter, spikes, lif_params(p), _code(path, vector_only=True))
    return spikes


def _check_shift(shift: int) -> int:
    if shift < MIN_SHIFT:
        raise ParameterError(f"shift {shift} is below {MIN_SHIFT}: rescale the layer (a left shift that large overflows)")
    return int(shift)


def output_stage(acc: np.ndarray, shift: int, activation: str = "relu", lut: np.ndarray | None = None,
                 path: str | None = None) -> np.ndarray:
    """ANN output stage ``act(sat8(rounding_shift_right(acc, shift)))`` → int8 of ``acc``'s shape."""
    if activation not in ACTIVATIONS:
        raise ParameterError(f"activation {activation!r} is unknown: use one of {', '.join(ACTIVATIONS)}")
    acc = _c(acc, np.int32)
    out = np.empty(acc.shape, np.int8)
    _k.output_stage(acc.reshape(-1), out.reshape(-1), _check_shift(shift), ACTIVATIONS[activation],
                    _c(lut, np.int8), _code(path, vector_only=True))
    return out


def current_stage(acc: np.ndarray, shift: int, path: str | None = None) -> np.ndarray:
    """SNN input current ``sat32(rounding_shift_right(acc, shift))`` → int32 of ``acc``'s shape."""
    acc = _c(acc, np.int32)
    out = np.empty(acc.shape, np.int32)
    _k.current_stage(acc.reshape(-1), out.reshape(-1), _check_shift(shift), _code(path, vector_only=True))
    return out


# ------------------------------------------------------------------------------ router


def count_packets(values: np.ndarray, ptr: np.ndarray, idx: np.ndarray, path: str | None = None) -> np.ndarray:
    """Spike packets per group: nonzero count of ``values[t, idx[ptr[g]:ptr[g+1]]]`` summed over t.

    ``values`` (T, n) (or (n,)) int8 → int64 (G,). A group is a (source core, destination core)
    pair and ``idx`` lists the source neurons the destination needs: one spike, one packet.
    """
    values = _c(values, np.int8)
    values = values.reshape(1, -1) if values.ndim == 1 else values.reshape(values.shape[0], -1)
    ptr = _c(ptr, np.int64)
    out = np.empty(max(len(ptr) - 1, 0), np.int64)
    _k.count_nonzero_groups(values, ptr, _c(idx, np.int32), out, _code(path, vector_only=True))
    return out


# ------------------------------------------------------------------- fused conv layer

MODES = {"auto": _k.AccMode.AUTO, "events": _k.AccMode.EVENTS, "plane": _k.AccMode.PLANE, "lut": _k.AccMode.LUT,
         "gemm": _k.AccMode.GEMM}  # conv_layer's accumulation (chip::AccMode)


@dataclasses.dataclass
class LayerRun:
    """What :func:`conv_layer` did: the output (T, M, Ho, Wo) int8, the nonzero count of every
    input (C, H, W) and output (M, Ho, Wo) over the T steps (int32), the accumulation mode
    (``events``, ``plane``, ``lut`` or ``gemm``) and whether int16 accumulators were exact and used."""

    out: np.ndarray
    in_count: np.ndarray
    out_count: np.ndarray
    mode: str
    int16: bool


def conv_layer(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int, padding: int, shift: int,
               activation: str = "relu", lut: np.ndarray | None = None, neuron: IntLIFParams | None = None,
               mode: str = "auto", threads: int | None = None, path: str | None = None) -> LayerRun:
    """A whole conv layer over all T steps in one C++ call (see ``cpp/conv_layer.cpp``).

    ``x`` int8 (T, C, H, W), ``weight`` int8 (M, C, kh, kw), ``bias`` int32 (M,) or None.
    ``acc = sat32(bias + conv(x, w))`` per step; with ``neuron`` (SNN mode) the output is the
    spikes of the integer LIF driven by ``sat32(rounding_shift_right(acc, shift))`` (state from
    zero, carried across the steps), otherwise (ANN mode) ``act(sat8(rounding_shift_right(acc,
    shift)))``. Equals im2col + :func:`dense_mac` + :func:`current_stage`/:func:`lif_run` or
    :func:`output_stage` bit for bit. ``mode``:

    * ``auto`` — ``gemm`` for int8 activations, otherwise the cheapest of the others by a count
      of vector operations from the measured activity;
    * ``events`` — only active inputs scatter their fan-out (with 0/1 inputs and int16
      accumulators one contiguous add per kernel row covers every output the input reaches);
    * ``plane`` — dense direct convolution, vectorized along output rows;
    * ``lut`` — 0/1 inputs with int16 accumulators: per output, each group of 8 spike taps
      (channels × columns of a kernel row) is a byte indexing a 256-entry table of their weight
      sums (``kh·ceil(kw·C/8)`` table adds per output; other inputs fall back to ``events``);
    * ``gemm`` — im2col of each step + :func:`dense_mac`'s kernel.

    ``threads`` (default :func:`get_threads`, all CPUs): the output rows are split into that
    many blocks, run on a persistent C++ thread pool with the GIL released. Each block is an
    ordinary layer call on its rows' receptive fields (zero-padded copy), with the mode chosen
    once from the whole input, and writes disjoint output rows, so every thread count gives the
    same bits (tested).
    """
    return run_layer(x, LayerCall.make(weight, bias, stride, padding, shift, activation, lut, neuron, mode), threads,
                     path)


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """The fixed arguments of a :func:`conv_layer` call, checked and converted once (e.g. per
    mapped layer; :func:`run_layer` then runs it on any input with little Python per call): the
    arrays, and the C++ ``LayerParams`` (named fields: stride, pad, shift, soma, mode, lif)."""

    weight: np.ndarray  # int8 (M, C, kh, kw), C-contiguous
    bias: np.ndarray | None  # int32 (M,)
    lut: np.ndarray | None  # int8 (256,) for the lut soma
    params: "_k.LayerParams"

    @property
    def stride(self) -> int:
        return self.params.stride

    @property
    def padding(self) -> int:
        return self.params.pad

    @property
    def spiking(self) -> bool:
        return self.params.soma == _k.Soma.LIF

    @staticmethod
    def make(weight: np.ndarray, bias: np.ndarray | None, stride: int, padding: int, shift: int,
             activation: str = "relu", lut: np.ndarray | None = None, neuron: IntLIFParams | None = None,
             mode: str = "auto") -> "LayerCall":
        weight = _c(weight, np.int8)
        if weight.ndim != 4:
            raise ParameterError(f"conv_layer: weight {weight.shape} must be (M, C, kh, kw)")
        if mode not in MODES:
            raise ParameterError(f"mode {mode!r} is unknown: use one of {', '.join(MODES)}")
        m, c, kh, kw = weight.shape
        if c * kh * kw > K_CHUNK:
            raise ParameterError(f"conv_layer: fan-in {c * kh * kw} exceeds {K_CHUNK}; split the input channels")
        if type(stride) is not int and not isinstance(stride, np.integer) or stride < 1 or padding < 0:
            raise ParameterError(f"conv_layer: stride must be an integer >= 1 and padding >= 0, got {stride}, {padding}")
        if neuron is not None:
            soma, lif = _k.Soma.LIF, lif_params(neuron)
        else:
            if activation not in ACTIVATIONS:
                raise ParameterError(f"activation {activation!r} is unknown: use one of {', '.join(ACTIVATIONS)}")
            soma, lif = ACTIVATIONS[activation], _k.LIFParams()
        lut = _c(lut, np.int8)
        if soma == _k.Soma.LUT and (lut is None or lut.shape != (256,)):
            raise ParameterError("conv_layer: the lut activation needs a 256-entry int8 lut")
        params = _k.LayerParams(stride=int(stride), pad=int(padding), shift=_check_shift(shift), soma=soma,
                                mode=MODES[mode], lif=lif)
        return LayerCall(weight, _c(bias, np.int32), lut, params)


def run_layer(x: np.ndarray, call: LayerCall, threads: int | None = None, path: str | None = None,
              in_count: np.ndarray | None = None, out_count: np.ndarray | None = None) -> LayerRun:
    """:func:`conv_layer` with its fixed arguments prepared by :meth:`LayerCall.make`; the nonzero
    counts go to ``in_count`` (C, H, W) / ``out_count`` (M, Ho, Wo) int32 where given (overwritten:
    the call clears them first), else to new arrays."""
    x, weight = _c(x, np.int8), call.weight
    stride, padding = call.params.stride, call.params.pad
    if x.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ParameterError(f"conv_layer: x {x.shape} and weight {weight.shape} do not match (T, C, H, W) x (M, C, kh, kw)")
    t, c, h, w = x.shape
    m, _, kh, kw = weight.shape
    if h + 2 * padding < kh or w + 2 * padding < kw:
        raise ParameterError(f"conv_layer: kernel {kh}x{kw} is larger than the padded input {h}x{w} (padding {padding})")
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    out = np.empty((t, m, ho, wo), np.int8)
    in_count = np.empty((c, h, w), np.int32) if in_count is None else in_count  # (cleared by the call)
    out_count = np.empty((m, ho, wo), np.int32) if out_count is None else out_count
    # the full path: the gemm mode's dense MAC runs on it (VNNI, AMX); the other bodies are AVX2 / scalar
    used = _k.conv_layer(x, weight, call.bias, call.params, call.lut, out, in_count, out_count, _code(path),
                         _check_threads(threads))
    return LayerRun(out, in_count, out_count, _MODE_NAMES[used & 3], bool(used & 4))


_MODE_NAMES = ("events", "plane", "lut", "gemm")


def wake_threads(workers: int) -> None:
    """Wake up to ``workers`` threads of the C++ kernel pool (started if needed) so that they spin
    for about 100 µs, ready for the next threaded call (a sleeping thread takes tens of µs to
    wake on a virtual machine): call it before preparing a threaded call."""
    _k.pool_wake(int(workers))


def _check_threads(threads: int | None) -> int:
    if type(threads) is int and threads > 0:  # (the common case, checked already)
        return threads
    return get_threads() if threads is None else (_valid_threads(threads) or cpu_count())


def window_counts(count: np.ndarray, c_range: tuple[int, int], kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """Per output position, the sum of ``count`` (C, H, W) over its receptive field and the
    channels ``c_range``: with ``count`` the nonzero count of every input over the steps, the
    active inputs each position saw (int64 (Ho·Wo,))."""
    count = _c(count, np.int32)
    _, h, w = count.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    out = np.empty(ho * wo, np.int64)
    _k.window_counts(count, int(c_range[0]), int(c_range[1]), int(kh), int(kw), int(stride), int(padding), out)
    return out



def window_range_sums(count: np.ndarray, c_range: tuple[int, int], kh: int, kw: int, stride: int, padding: int,
                      starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``out[i] = window_counts(count, c_range, ...)[starts[i]:stops[i]].sum()`` (int64): the active
    inputs of cores that own the output positions ``starts[i]:stops[i]``, in one call."""
    out = np.empty(len(starts), np.int64)
    _k.window_range_sums(_c(count, np.int32), int(c_range[0]), int(c_range[1]), int(kh), int(kw), int(stride),
                         int(padding), _c(starts, np.int64), _c(stops, np.int64), out)
    return out

def group_sums(count: np.ndarray, ptr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``out[g] = count[idx[ptr[g]:ptr[g+1]]].sum()`` (int64 (G,)): the packets of each route from
    the nonzero counts (int32) of the neurons it carries."""
    out = np.empty(max(len(ptr) - 1, 0), np.int64)
    _k.group_sums(_c(count, np.int32), _c(ptr, np.int64), _c(idx, np.int32), out)
    return out


def range_sums(count: np.ndarray, ptr: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``out[g] = sum(count[starts[r]:stops[r]].sum() for r in range(ptr[g], ptr[g+1]))`` (int64
    (G,)): :func:`group_sums` with each group's indices given as contiguous runs (a route's neurons
    are a few channel × position ranges, so this reads ~30× fewer indices)."""
    out = np.empty(max(len(ptr) - 1, 0), np.int64)
    _k.range_sums(_c(count, np.int32), _c(ptr, np.int64), _c(starts, np.int64), _c(stops, np.int64), out)
    return out



def max_pool(x: np.ndarray, k: int, path: str | None = None) -> np.ndarray:
    """Max pooling of int8 ``x`` (..., H, W) over k×k windows with stride k → (..., H//k, W//k)
    (rows / columns past the last whole window are dropped, as in ``neurosim.intnet``)."""
    x = _c(x, np.int8)
    if x.ndim < 2 or k < 1:
        raise ParameterError(f"max_pool: x must be (..., H, W) and k >= 1, got {x.shape} and k={k}")
    *lead, h, w = x.shape
    out = np.empty((*lead, h // k, w // k), np.int8)
    if out.size:
        _k.max_pool(x.reshape(-1, h, w), int(k), out.reshape(-1, h // k, w // k), _code(path, vector_only=True))
    return out


def nonzero_counts(values: np.ndarray, path: str | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Nonzero count of every value of ``values`` (T, ...) over its T steps → int32 (n,) (into
    ``out``, an int32 (n,) array that is overwritten, where given, like :func:`run_layer`'s counts)."""
    values = _c(values, np.int8)
    v2 = values.reshape(values.shape[0], -1)
    if out is None:
        out = np.zeros(v2.shape[1], np.int32)
    else:
        out[:] = 0
    _k.count_nonzero_cols(v2, out, _code(path, vector_only=True))
    return out


# ------------------------------------------------------------------- SNN chain


Tally = _k.Tally  # a compiled plan's counting after a run (cpp/tally.cpp; chip_models.simulate.CountLayout)


@dataclasses.dataclass
class ChainRun:
    """What :func:`snn_chain` did: the last stage's output (T, M, Ho, Wo) int8 and the nonzero
    counts over the T steps (int32, channel-major) of the chain input (``in_count``), of every
    stage's output (``out_counts``) and of every pooled stage input (``pool_counts``; None for a
    stage without a pool)."""

    out: np.ndarray
    in_count: np.ndarray
    out_counts: list
    pool_counts: list
    stage_in_counts: list = dataclasses.field(repr=False, default_factory=list)  # (C++'s in_counts: stage 0 and the pooled)


def _chain_input(x: np.ndarray) -> np.ndarray:
    """A chain's input as C-contiguous int8 (T, C, H, W) (ParameterError for another shape)."""
    x = _c(x, np.int8)
    if x.ndim != 4:
        raise ParameterError("snn_chain: x must be (T, C, H, W), with one pool size per call and none before the first")
    return x


@dataclasses.dataclass(frozen=True)
class ChainSpec:
    """A chain's stages checked against inputs of ``in_shape`` (C, H, W) and converted for C++
    once (simulate's plan keeps one per chain): the arguments that stay the same from run to run,
    the shapes of the counts (``in_count_shapes[i]``: (C, H, W) of stage ``i``'s input, counted
    for stage 0 and for pooled stages, else None; ``out_count_shapes[i]``: of its output) and the
    last stage's output shape ``out_shape`` (M, Ho, Wo). Make one with :meth:`make`."""

    in_shape: tuple[int, int, int]
    weights: tuple
    biases: tuple
    params: tuple
    pools: tuple[int, ...]
    lut: np.ndarray | None
    in_count_shapes: tuple
    out_count_shapes: tuple
    out_shape: tuple[int, int, int]
    path_code: int
    first: "_k.FirstStage"
    tables: "_k.ChainTables | None" = None  # tables made from the weights, kept across runs (keep_tables)

    @staticmethod
    def make(in_shape: tuple, calls: list, pools: list, path: str | None = None,
             first_stage: str = "auto", keep_tables: bool = False) -> "ChainSpec":
        """Check and convert the stages (ParameterError where they do not chain up); with
        ``keep_tables`` the tables C++ makes from the weights alone (the lut stages' tables) are
        made on the first run and kept for the next ones (the calls' weights must not change)."""
        if len(in_shape) != 3 or len(calls) != len(pools) or not calls or pools[0]:
            raise ParameterError("snn_chain: x must be (T, C, H, W), with one pool size per call and none before the first")
        c, h, w = (int(v) for v in in_shape)
        in_shapes, out_shapes = [], []
        for i, (call, k) in enumerate(zip(calls, pools)):
            if i + 1 < len(calls) and (not call.spiking or call.weight.shape[0] % 8):
                raise ParameterError("snn_chain: every stage but the last must be an SNN layer with a multiple of 8 outputs")
            if k:
                h, w = h // k, w // k
            m, ci, kh, kw = call.weight.shape
            if ci != c or h + 2 * call.padding < kh or w + 2 * call.padding < kw:
                raise ParameterError(f"snn_chain: stage {i} weight {call.weight.shape} does not fit its input ({c}, {h}, {w})")
            in_shapes.append((c, h, w) if (i == 0 or k) else None)
            c, h, w = m, (h + 2 * call.padding - kh) // call.stride + 1, (w + 2 * call.padding - kw) // call.stride + 1
            out_shapes.append((c, h, w))
        return ChainSpec(tuple(int(v) for v in in_shape), tuple(cl.weight for cl in calls), tuple(cl.bias for cl in calls),
                         tuple(cl.params for cl in calls), tuple(int(k) for k in pools), calls[-1].lut, tuple(in_shapes),
                         tuple(out_shapes), (c, h, w), _code(path), _first_stage(first_stage, calls, path),
                         _k.ChainTables(len(calls)) if keep_tables else None)

    def run_buffers(self, steps: int, in_counts: list | None = None, out_counts: list | None = None) -> "ChainRun":
        """A ChainRun to fill for ``steps`` steps: the output, and the counts (new arrays, or the
        given ``in_counts`` / ``out_counts`` entries, int32 arrays of the right shapes, where not
        None; a run clears them before it counts)."""
        ins = [None if shape is None else (in_counts[i] if in_counts and in_counts[i] is not None
                                           else np.empty(shape, np.int32))  # (cleared by the run)
               for i, shape in enumerate(self.in_count_shapes)]
        outs = [out_counts[i] if out_counts and out_counts[i] is not None else np.empty(shape, np.int32)
                for i, shape in enumerate(self.out_count_shapes)]
        pooled = [ins[i] if self.pools[i] else None for i in range(len(ins))]
        return ChainRun(np.empty((steps, *self.out_shape), np.int8), ins[0], outs, pooled, ins)

    def args(self, x: np.ndarray, run: "ChainRun") -> tuple:
        """The C++ arguments of a run on ``x`` (T, C, H, W) int8 that fills ``run``."""
        x = _chain_input(x)
        if x.shape[1:] != self.in_shape:
            raise ParameterError(f"snn_chain: x {x.shape} does not have the chain's input shape {self.in_shape}")
        return (x, list(self.weights), list(self.biases), list(self.params), list(self.pools), self.lut, run.out,
                run.stage_in_counts, run.out_counts, self.path_code)

    def run(self, x: np.ndarray, threads: int, block_steps: int = 0, run: "ChainRun | None" = None) -> "ChainRun | None":
        """Run on ``x`` (T, C, H, W) int8 with ``threads`` threads (checked) into ``run``
        (default: new buffers); None when the chain declined (see :func:`snn_chain`)."""
        run = run or self.run_buffers(x.shape[0])
        done = _k.snn_chain(*self.args(x, run), _check_threads(threads), block_steps, self.first, self.tables)
        return None if done < 0 else run

    def start(self, x: np.ndarray, threads: int, helpers: int, run: "ChainRun | None" = None) -> "ChainPending":
        """:meth:`run` as a job that ``helpers`` threads start on at once (see :func:`snn_chain_start`)."""
        run = run or self.run_buffers(x.shape[0])
        args = self.args(x, run)
        job = _k.snn_chain_start(*args, _check_threads(threads), helpers, self.first, self.tables)
        return ChainPending(job, (args, self.tables), run)


FIRST_STAGES = {"auto": _k.FirstStage.AUTO, "spans": _k.FirstStage.SPANS, "rows": _k.FirstStage.ROWS}


def _first_stage(first_stage: str, calls: list, path: str | None):
    """The C++ code of ``first_stage`` (checked: ``rows`` only where :func:`chain_rows_available`)."""
    if first_stage not in FIRST_STAGES:
        raise ParameterError(f"first_stage must be one of {sorted(FIRST_STAGES)}, not {first_stage!r}")
    if first_stage == "rows" and not chain_rows_available(calls[0], path):
        raise ParameterError("first_stage='rows' needs the avx512vnni or amx path on a CPU with AVX-512 VBMI and a first "
                             "stage with 8 or 16 outputs, stride <= 4 and kernel width <= 16: use 'auto' or 'spans'")
    return FIRST_STAGES[first_stage]


def chain_rows_available(call, path: str | None = None) -> bool:
    """Whether a chain whose first stage is ``call`` can run that stage as dense VNNI rows on ``path``
    (default: the process's): avx512vnni or amx on a CPU with AVX-512 VBMI, M in {8, 16}, stride ≤ 4,
    kw ≤ 16."""
    name = get_path() if path is None else path
    if name not in _PATHS:
        name = resolve_path(name)  # (raises)
    m, _, _, kw = call.weight.shape
    return (name in ("avx512vnni", "amx") and bool(_k.cpu_features()["avx512vbmi"]) and m in (8, 16)
            and call.stride <= 4 and kw <= 16)


def snn_chain(x: np.ndarray, calls: list, pools: list, threads: int | None = None,
              block_steps: int = 0, path: str | None = None, first_stage: str = "auto") -> ChainRun | None:
    """Spiking conv layers chained in one C++ call (``cpp/snn_chain.cpp``), the spikes kept
    bit-packed between them: stage ``i`` is ``calls[i]`` (a :class:`LayerCall`) applied to stage
    ``i - 1``'s spikes max-pooled ``pools[i]`` × ``pools[i]`` first (0: no pool; ``pools[0]`` must
    be 0); stage 0 reads ``x`` (T, C, H, W). Every stage but the last must be an SNN layer with
    M % 8 == 0. The result equals :func:`conv_layer` / :func:`max_pool` layer by layer bit for
    bit (tested). Returns None (and computes nothing) when ``x`` is not 0/1 or a stage's int16
    condition (``max_m Σ_k |w[m, k]| ≤ 32767``) fails: run the layers one by one then.

    ``threads`` (default :func:`get_threads`, all CPUs): each stage's output rows are cut into that
    many bands, and the steps into blocks of up to 255 (``block_steps``; 0: about 4 blocks per
    thread with more than one thread, else as many steps as fit about 1 MB of the bit images
    between the stages); the tasks (one band of one stage over one block) run as a data flow on
    the caller and ``threads - 1`` threads of the C++ pool (a task starts once the previous block
    of its band and the stage before on its block are done, so the stages of consecutive blocks
    overlap). On the avx512vnni and amx paths the chain runs its AVX-512 variant (the fast LIF
    soma 16 lanes wide, the first stage's spans one zmm add each), on the other vector paths the
    AVX2 bodies.

    ``first_stage``: how stage 0 accumulates. ``spans``: event-driven, one add per input one and
    kernel row (cost ∝ the input's activity); ``rows``: dense VNNI dot products over every output
    row (``cpp/conv_rows_vnni.h``; cost fixed; see :func:`chain_rows_available`); ``auto`` (default)
    takes the rows where they are available and cheaper for the input's count of ones. Same bits
    and counts for every path, first stage, thread count and block size."""
    threads = _check_threads(threads)
    if type(block_steps) is not int or block_steps < 0:
        raise ParameterError(f"block_steps must be an integer >= 0, not {block_steps!r}")
    x = _chain_input(x)
    return ChainSpec.make(x.shape[1:], calls, pools, path, first_stage).run(x, threads, block_steps)


class ChainPending:
    """An SNN chain running beside the caller (:func:`snn_chain_start`); :meth:`join` works on it
    too until it is done and returns what :func:`snn_chain` would (the arrays stay referenced here
    until then)."""

    def __init__(self, job, args: tuple, run: ChainRun):
        self._job, self._args, self._run = job, args, run

    def join(self) -> ChainRun | None:
        done = self._job.join()
        self._args = None
        return None if done < 0 else self._run


def snn_chain_start(x: np.ndarray, calls: list, pools: list, threads: int | None = None,
                    helpers: int | None = None, path: str | None = None, first_stage: str = "auto") -> ChainPending:
    """:func:`snn_chain` as a job that ``helpers`` threads (default ``threads - 1``) start on at once
    while the caller does other work (e.g. the ANN branch, with one thread); the caller then joins
    the job's team with :meth:`ChainPending.join`. The bands are cut for ``threads``; the result is
    the same for every count."""
    threads = _check_threads(threads)
    helpers = threads - 1 if helpers is None else helpers
    if type(helpers) is not int or helpers < 0:
        raise ParameterError(f"helpers must be an integer >= 0, not {helpers!r}")
    x = _chain_input(x)
    return ChainSpec.make(x.shape[1:], calls, pools, path, first_stage).start(x, threads, helpers)
