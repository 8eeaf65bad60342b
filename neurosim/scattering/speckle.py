"""Speckle simulator: an object on a modulator, a transmission matrix, a camera.

The forward model (one sample, object ``x`` of S×S pixels in [0, 1], N = M = S²)::

    u = encode(x)                      SLM/DMD field, (N,) complex, on an integer grid
    E_l = T_l u                        field at the camera, l = 1..L mutually incoherent
                                       realisations (partial coherence), T_l (M, N) complex
    I = (1/L) Σ_l |E_l|² / (N·P_T·u_max²)   intensity, 1 on average for a fully-on object
    n_e = Poisson(photons·I) + Normal(0, read_noise²)          electrons
    counts = clip(round(n_e · (2^bits − 1) / (full_well·photons)), 0, 2^bits − 1)
    speckle = counts / max(counts)     max-normalised network input, (S, S) float32

``P_T`` is the mean power of one matrix entry, so the mean intensity of a fully-on object
is 1 and ``photons`` is the mean number of photoelectrons per pixel for it.

Transmission matrix: fully developed speckle (``modes = 0``) uses i.i.d. circular complex
Gaussian entries, the standard model of a thick multiply-scattering medium; the intensity at
each camera pixel is then exponential, contrast std/mean = 1. Partially developed speckle
(``modes = K``): light reaches each pixel through K paths, ``T = U·V`` with unit-modulus random
phasors ``U`` (M, K) and Gaussian ``V`` (K, N); for ``c = V u`` the contrast is
``C² = 1 − Σ|c_k|⁴ / (Σ|c_k|²)²`` (K equal paths: 1 − 1/K). Partial coherence
(``coherence_modes = L``) averages L independent speckle patterns: contrast 1/√L, intensity
Gamma(L). A drifting medium (``decorrelation = ε`` every ``drift_every`` samples) evolves
``T_{j+1} = √(1−ε)·T_j + √ε·T'_j`` with a fresh ``T'_j``; intensity patterns j steps apart
correlate by (1 − ε)^j.

Bit-reproducibility: every matrix entry and every modulator value is an integer (Gaussian
entries with standard deviation 2^10, phasors of modulus 2^7, grey levels, cos/sin of the
phase ×2^8), so every product and partial sum of ``T u`` is an integer below 2^53 and exact in
float64 whatever the BLAS's summation order or thread count. Random numbers come from
numpy ``Generator``s seeded with ``(seed, purpose, index)``: the medium from ``medium_seed``,
each sample's camera noise from ``(noise_seed, 2, stream, sample index)``, so a set simulated
in pieces (``start``) equals the set simulated whole, bit for bit, and sets given different
``stream`` numbers (a training and a test set) get independent noise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from neurosim.errors import ParameterError

ENCODINGS = ("amplitude", "phase", "binary")
_T_STD = 2.0**10  # std of a Gaussian matrix entry's real and imaginary parts (integer grid)
_PHASOR = 2.0**7  # modulus of a partially developed path's phasor
_V_STD = 2.0**7  # std of the path-to-object mixing entries
_PHASE_SCALE = 2.0**8  # cos/sin of a phase-encoded pixel, ×256, rounded


@dataclasses.dataclass
class SpeckleParams:
    """Parameters of the speckle simulator (see the module docstring for the model).

    Attributes:
        size: object and camera side S in pixels (S×S each; N = M = S²).
        encoding: ``amplitude`` (SLM grey level = amplitude), ``phase`` (phase 0..π·x, unit
            amplitude) or ``binary`` (DMD: mirror on where x ≥ 0.5).
        slm_levels: grey or phase levels of the modulator (8-bit SLM: 256).
        modes: 0 for fully developed speckle; K ≥ 1 paths per pixel for partially developed.
        coherence_modes: L mutually incoherent speckle realisations averaged (1: coherent).
        decorrelation: ε, the fraction of the medium replaced at each drift step (0: static).
        drift_every: samples per drift step (the medium drifts between acquisitions).
        photons: mean photoelectrons per pixel for a fully-on object.
        read_noise: camera read noise, electrons rms.
        bits: ADC bits (8-12 for scientific cameras).
        full_well: ADC full scale in units of ``photons`` (8: a pixel saturates at 8× the mean).
        medium_seed: seed of the transmission matrix (same seed = same medium).
        noise_seed: seed of the camera noise.
    """

    size: int = 32
    encoding: str = "amplitude"
    slm_levels: int = 256
    modes: int = 0
    coherence_modes: int = 1
    decorrelation: float = 0.0
    drift_every: int = 1
    photons: float = 1000.0
    read_noise: float = 4.0
    bits: int = 10
    full_well: float = 8.0
    medium_seed: int = 0
    noise_seed: int = 1

    def check(self) -> "SpeckleParams":
        """Raise ParameterError naming the first value out of :data:`SPECKLE_RANGES`."""
        from neurosim.config import check_range

        for name, (low, high, low_open) in SPECKLE_RANGES.items():
            check_range(name, getattr(self, name), low, high, low_open=low_open,
                        why="to go past the upper bound edit SPECKLE_RANGES in neurosim/scattering/speckle.py")
        if self.encoding not in ENCODINGS:
            raise ParameterError(f"parameter encoding = {self.encoding!r} is unknown: use one of {', '.join(ENCODINGS)}")
        matrix_bytes = 16 * self.coherence_modes * self.size**4
        if matrix_bytes > 2**30:
            raise ParameterError(f"size {self.size} with coherence_modes {self.coherence_modes} needs "
                                 f"{matrix_bytes / 2**30:.1f} GiB of transmission matrices (limit 1 GiB): "
                                 "lower size or coherence_modes")
        return self


# (low, high, low excluded) of each number; size 64 already makes 4096×4096 complex matrices.
SPECKLE_RANGES: dict[str, tuple[float, float, bool]] = {
    "size": (2, 64, False), "slm_levels": (2, 4096, False), "modes": (0, 4096, False),
    "coherence_modes": (1, 16, False), "decorrelation": (0.0, 1.0, False), "drift_every": (1, 10**9, False),
    "photons": (0.0, 1e9, True), "read_noise": (0.0, 1e6, False), "bits": (1, 16, False),
    "full_well": (0.0, 1e6, True), "medium_seed": (0, 2**32 - 1, False), "noise_seed": (0, 2**32 - 1, False),
}


@dataclasses.dataclass
class Medium:
    """A transmission matrix on the integer grid: ``real``, ``imag`` float64 (L, M, N) integers."""

    real: np.ndarray
    imag: np.ndarray

    @property
    def power(self) -> float:
        """P_T: mean |T_mn|² over all entries."""
        return float(np.mean(self.real**2 + self.imag**2))


def _gaussian_matrix(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.rint(rng.standard_normal(shape) * _T_STD), np.rint(rng.standard_normal(shape) * _T_STD)


def _path_matrix(rng: np.random.Generator, m: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """T = U V: K unit-modulus random phasors per camera pixel times Gaussian path mixing (exact integers)."""
    phase = rng.uniform(0.0, 2.0 * math.pi, (m, k))
    ur, ui = np.rint(_PHASOR * np.cos(phase)), np.rint(_PHASOR * np.sin(phase))
    vr, vi = np.rint(rng.standard_normal((k, n)) * _V_STD), np.rint(rng.standard_normal((k, n)) * _V_STD)
    return ur @ vr - ui @ vi, ur @ vi + ui @ vr


def make_medium(params: SpeckleParams, step: int = 0, previous: Medium | None = None) -> Medium:
    """The transmission matrices (L of them) at drift step ``step``.

    Step 0 is drawn from ``medium_seed``; step j > 0 mixes ``previous`` (step j − 1) with a fresh
    matrix drawn from ``(medium_seed, 1, j)``: ``round(√(1−ε)·T + √ε·T')``.
    """
    n = params.size * params.size
    shape = (params.coherence_modes, n, n)

    def fresh(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if params.modes == 0:
            return _gaussian_matrix(rng, shape)
        parts = [_path_matrix(rng, n, n, params.modes) for _ in range(params.coherence_modes)]
        return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])

    if step == 0:
        return Medium(*fresh(np.random.default_rng([params.medium_seed, 0])))
    if previous is None:
        previous = make_medium(params, 0)
        for j in range(1, step):
            previous = make_medium(params, j, previous)
    new_r, new_i = fresh(np.random.default_rng([params.medium_seed, 1, step]))
    keep, mix = math.sqrt(1.0 - params.decorrelation), math.sqrt(params.decorrelation)
    return Medium(np.rint(keep * previous.real + mix * new_r), np.rint(keep * previous.imag + mix * new_i))


def encode(objects: np.ndarray, params: SpeckleParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Modulator fields of objects (B, S, S) in [0, 1]: ``(real, imag, u_max)``, each (B, N)
    integer-valued float64; ``u_max`` is the modulus of a fully-on pixel."""
    x = np.clip(np.asarray(objects, np.float64), 0.0, 1.0).reshape(len(objects), -1)
    levels = params.slm_levels - 1
    if params.encoding == "amplitude":
        return np.rint(x * levels), np.zeros_like(x), float(levels)
    if params.encoding == "binary":
        return (x >= 0.5).astype(np.float64), np.zeros_like(x), 1.0
    phase = math.pi * np.rint(x * levels) / levels
    return np.rint(_PHASE_SCALE * np.cos(phase)), np.rint(_PHASE_SCALE * np.sin(phase)), _PHASE_SCALE


def intensity(objects: np.ndarray, params: SpeckleParams, medium: Medium) -> np.ndarray:
    """Noise-free camera intensity of objects (B, S, S) through ``medium``: (B, S, S) float64,
    mean 1 for a fully-on object."""
    ur, ui, u_max = encode(objects, params)
    total = np.zeros((len(ur), medium.real.shape[1]))
    for tr, ti in zip(medium.real, medium.imag):
        er = ur @ tr.T - ui @ ti.T  # exact: integer products and sums < 2^53
        ei = ur @ ti.T + ui @ tr.T
        total += er * er + ei * ei
    n = ur.shape[1]
    scale = medium.real.shape[0] * n * medium.power * u_max * u_max
    return (total / scale).reshape(objects.shape[0], params.size, params.size)


def camera(intensity_: np.ndarray, params: SpeckleParams, start: int = 0, stream: int = 0) -> np.ndarray:
    """Camera counts (B, S, S) uint16 of intensities (B, S, S): shot noise, read noise, ADC.

    Sample ``start + b`` draws its noise from ``default_rng((noise_seed, 2, stream, start + b))``.
    """
    top = 2**params.bits - 1
    gain = top / (params.full_well * params.photons)
    out = np.empty(intensity_.shape, np.uint16)
    for b, img in enumerate(intensity_):
        rng = np.random.default_rng([params.noise_seed, 2, stream, start + b])
        electrons = rng.poisson(params.photons * np.maximum(img, 0.0)).astype(np.float64)
        if params.read_noise > 0:
            electrons += rng.normal(0.0, params.read_noise, img.shape)
        out[b] = np.clip(np.floor(electrons * gain + 0.5), 0, top)
    return out


def normalise(counts: np.ndarray) -> np.ndarray:
    """Max-normalised speckle (B, S, S) float32 in [0, 1] (an all-dark frame stays 0)."""
    c = counts.astype(np.float32)
    peak = c.reshape(len(c), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, c / np.maximum(peak, 1), 0.0).astype(np.float32)


def simulate(objects: np.ndarray, params: SpeckleParams, start: int = 0, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speckle of objects (B, S, S) in [0, 1], taken as samples ``start .. start + B − 1``.

    ``stream`` numbers independent sets (their camera noise is independent; the medium is shared).

    Returns ``(speckle, counts)``: max-normalised float32 (B, S, S) and raw uint16 counts.
    Sample i sees the medium of drift step ``i // drift_every`` (static when
    ``decorrelation`` is 0). Same objects, parameters and ``start`` → the same bits.
    """
    params.check()
    objects = np.asarray(objects)
    if objects.ndim != 3 or objects.shape[1:] != (params.size, params.size):
        raise ParameterError(f"objects have shape {objects.shape}, expected (B, {params.size}, {params.size}): "
                             "resize them or set size")
    index = start + np.arange(len(objects))
    steps = index // params.drift_every if params.decorrelation > 0 else np.zeros_like(index)
    result = np.empty(objects.shape, np.float64)
    medium, at = None, -1
    for step in np.unique(steps):
        if medium is None:
            medium, at = make_medium(params, int(step)), int(step)
        while at < step:
            at += 1
            medium = make_medium(params, at, medium)
        sel = steps == step
        result[sel] = intensity(objects[sel], params, medium)
    counts = camera(result, params, start, stream)
    return normalise(counts), counts


def contrast(intensity_: np.ndarray) -> float:
    """Speckle contrast std(I)/mean(I) over all pixels given."""
    i = np.asarray(intensity_, np.float64)
    return float(i.std() / i.mean())
