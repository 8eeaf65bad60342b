"""The DVS simulator's parameter set (:class:`DvsParams`) and the sensor presets.

One flat dataclass, units in the names (``_us`` microseconds, ``_hz`` per second, ``_dn``
digital numbers of an 8-bit frame, thresholds in natural-log units of intensity). It is what
``--config cal.toml`` and ``--set key=value`` fill, what ``neurosim events calibrate`` writes,
and what a sequence file stores (with the seed) in its ``simulator`` attribute.

Presets: ``davis240``, ``davis346``, ``dvxplorer``, ``prophesee_gen4``, ``clean``. The value
sources are commented; where the literature gives only a range
(docs/explanation/references.md §1) the choice is ours and says so. Use
``neurosim events calibrate`` to fit a real camera instead.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from neurosim.config import check_range
from neurosim.errors import ParameterError


@dataclasses.dataclass
class DvsParams:
    """Parameters of the video → DVS event simulator (see sim_events/pixel.py for the math).

    Pixel (per pixel p; thresholds in log-intensity units, L = log I):

    - ``contrast_threshold_on`` / ``contrast_threshold_off``: mean θ_on, θ_off. An ON event
      when L − L_ref ≥ θ_on(p) (then L_ref += θ_on(p)); OFF when L_ref − L ≥ θ_off(p).
    - ``threshold_sigma``: σ of the fixed-pattern mismatch, θ(p) = θ + σ·N(0, 1), drawn once
      from the seed (independently for ON and OFF), clamped at ``threshold_floor`` > 0.
    - ``refractory_us``: a crossing less than this after the pixel's last event makes no
      event (the reference still moves, as the pixel's reset is held).
    - ``cutoff_hz``: photoreceptor bandwidth at full scale (DN 255); the first-order low-pass
      on L has f_c = cutoff_hz·(DN + 20)/275 (v2e's scaling), so dark pixels are slow.
      0 = no low-pass (an ideal, infinitely fast photoreceptor).
    - ``leak_rate_hz``: mean rate of leak ON events of a static pixel (the reference drifts
      down by θ_on·rate per second); per pixel log-normal with σ ``leak_sigma`` (log units).
    - ``shot_noise_rate_hz``: Poisson noise events (ON and OFF alike) per pixel at DN 64;
      the rate scales as 2/(1 + DN/64): twice as many at black, 0.4× at DN 255.
    - ``hot_pixel_fraction`` of the pixels (drawn from the seed) plus the listed
      ``hot_pixels`` (flat indices y·W + x, e.g. found by calibration) fire ON events at
      ``hot_pixel_rates_hz`` (one rate per listed pixel, e.g. fitted to a dark scene's event
      frames; empty = all at ``hot_pixel_rate_hz``), else at
      ``hot_pixel_rate_hz`` (Poisson). ``off_hot_pixels`` fire OFF events at
      ``off_hot_pixel_rates_hz`` (one rate each; e.g. lights flickering in a dark scene).
    - ``jitter_us``: σ of Gaussian timestamp jitter (reflected at the ends of the frame pair's
      span, so the stream stays sorted).
    - ``latency_us``: constant delay of every event after the brightness change.
    - ``linlog_dn``: the response is log(DN) above this level and linear below it (joined
      with equal value and slope), so black pixels do not produce log(0) noise.
    - ``highlight_knee_dn``, ``highlight_gain``: APS frames compress highlights and clip at
      DN 255 while the log photoreceptor does not; above the knee K the response gets
      + gain·(DN − K)/(255 − K) log units (0 = off). Fitted by calibration.
    - ``initial_offset``: at the start, u = L − L_ref is drawn U(−a·θ_off, a·θ_on) with
      a = initial_offset (a real pixel's reference lies anywhere between its thresholds;
      0 starts every pixel at its reference, which delays and frame-locks first events).
    - ``preroll``: then (with interpolation) run the model over one virtual interval before
      the first frame, extrapolated with the first pair's flow, so pixels that were already
      changing start with their reference trailing the signal, as in a real camera, and the
      events due to arrive (after ``latency_us``) at or after the first frame are kept.

    Input frames (APS-like frames carry read noise that a DVS pixel does not see):

    - ``noise_gate_sigmas``: k of the input noise gate; a pixel of the frame the simulator
      uses follows the new frame only where |new − kept| > k·σ(DN) with
      σ(DN) = sqrt(aps_read_noise_dn² + aps_shot_gain·DN). 0 = off (clean video).
    - ``blur_px``: σ (pixels) of a Gaussian blur of the gated frames (optics and pixel
      cross-talk; it also evens out the smoothing of sub-pixel sampling along the flow,
      which otherwise makes frame times sharper than the times between them). 0 = off.

    Time between frames:

    - ``interpolation``: brightness is carried along OpenCV DIS optical flow between frames
      (``flow_preset`` ultrafast / fast / medium, estimated on the frames scaled by
      ``flow_scale`` — 0.5 about halves the flow cost but cost fidelity on real data — and
      scaled back); False = linear in log intensity.
    - adaptive sub-steps per pixel: no pixel moves more than ``max_px_per_step`` pixels or
      changes by more than ``max_theta_fraction``·θ per sub-step, at most ``max_substeps``.
    - ``bridge_sigma``: σ (log units, scaled by min(1, |L_B − L_A|/θ)) of a Brownian bridge
      (zero at both frames) added to a changing pixel's path: the unknown path between
      frames as a random walk. It flattens frame-locked phases but adds events and costs
      timing precision (on the DAVIS346 recording 0.4 gave phase CV 0.06 but F1 0.46);
      0 = off, the default and what calibration uses.

    Every number has a range (:data:`RANGES`: finite, bounded; upper bounds far past real
    sensors guard against runaway time and memory), checked on construction.
    """

    contrast_threshold_on: float = 0.25
    contrast_threshold_off: float = 0.25
    threshold_sigma: float = 0.03
    threshold_floor: float = 0.01
    refractory_us: float = 100.0
    cutoff_hz: float = 0.0
    leak_rate_hz: float = 0.01
    leak_sigma: float = 0.5
    shot_noise_rate_hz: float = 0.001
    hot_pixel_fraction: float = 0.0
    hot_pixel_rate_hz: float = 10.0
    hot_pixels: list[int] = dataclasses.field(default_factory=list)
    hot_pixel_rates_hz: list[float] = dataclasses.field(default_factory=list)
    off_hot_pixels: list[int] = dataclasses.field(default_factory=list)
    off_hot_pixel_rates_hz: list[float] = dataclasses.field(default_factory=list)
    jitter_us: float = 0.0
    latency_us: float = 0.0
    linlog_dn: float = 20.0
    highlight_knee_dn: float = 255.0
    highlight_gain: float = 0.0
    initial_offset: float = 1.0
    preroll: bool = True
    noise_gate_sigmas: float = 0.0
    blur_px: float = 0.0
    aps_read_noise_dn: float = 1.5
    aps_shot_gain: float = 0.0
    interpolation: bool = True
    flow_preset: str = "ultrafast"
    flow_scale: float = 1.0
    max_px_per_step: float = 1.0
    max_theta_fraction: float = 0.5
    max_substeps: int = 64
    bridge_sigma: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "DvsParams":
        """Raise ParameterError naming the first value outside its range (:data:`RANGES`)."""
        for name, (low, high, low_open) in RANGES.items():
            check_range(name, getattr(self, name), low, high, low_open=low_open, why=_why(name, high))
        if self.flow_preset not in FLOW_PRESETS:
            raise ParameterError(f"flow_preset {self.flow_preset!r} is unknown: use one of {', '.join(FLOW_PRESETS)}")
        if any(not isinstance(i, numbers.Integral) or not 0 <= i < 2**31 for i in self.hot_pixels):
            raise ParameterError("hot_pixels must be flat pixel indices y*width + x in [0, 2^31)")
        if self.hot_pixel_rates_hz and len(self.hot_pixel_rates_hz) != len(self.hot_pixels):
            raise ParameterError(f"hot_pixel_rates_hz has {len(self.hot_pixel_rates_hz)} rates for {len(self.hot_pixels)} "
                                 f"hot_pixels: give one rate per listed pixel, or none")
        if any(not isinstance(r, numbers.Real) or not 0 <= r <= 1e4 for r in self.hot_pixel_rates_hz):
            raise ParameterError("hot_pixel_rates_hz must be rates in [0, 1e4] Hz")
        if any(not isinstance(i, numbers.Integral) or not 0 <= i < 2**31 for i in self.off_hot_pixels):
            raise ParameterError("off_hot_pixels must be flat pixel indices y*width + x in [0, 2^31)")
        if len(self.off_hot_pixel_rates_hz) != len(self.off_hot_pixels):
            raise ParameterError(f"off_hot_pixel_rates_hz has {len(self.off_hot_pixel_rates_hz)} rates for "
                                 f"{len(self.off_hot_pixels)} off_hot_pixels: give one rate per listed pixel")
        if any(not isinstance(r, numbers.Real) or not 0 <= r <= 1e4 for r in self.off_hot_pixel_rates_hz):
            raise ParameterError("off_hot_pixel_rates_hz must be rates in [0, 1e4] Hz")
        return self

    check = validate

    def replace(self, **changes: Any) -> "DvsParams":
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON ready)."""
        d = dataclasses.asdict(self)
        d["hot_pixels"] = [int(i) for i in self.hot_pixels]
        d["hot_pixel_rates_hz"] = [float(r) for r in self.hot_pixel_rates_hz]
        d["off_hot_pixels"] = [int(i) for i in self.off_hot_pixels]
        d["off_hot_pixel_rates_hz"] = [float(r) for r in self.off_hot_pixel_rates_hz]
        return d


FLOW_PRESETS = ("ultrafast", "fast", "medium")

# (low, high, low excluded) of every numeric field. Upper bounds lie far beyond real sensors
# (DVS pixels fire at most ~10 kHz; a 1 s refractory period or a 50 px blur is already absurd)
# and guard against runaway time and memory: a noise rate of 1e15 Hz would ask for 1e15
# events per pixel and second.
RANGES: dict[str, tuple[float, float, bool]] = {
    "contrast_threshold_on": (0.0, 10.0, True),  # log units
    "contrast_threshold_off": (0.0, 10.0, True),
    "threshold_sigma": (0.0, 10.0, False),
    "threshold_floor": (0.0, 10.0, True),
    "refractory_us": (0.0, 1e6, False),  # ≤ 1 s
    "cutoff_hz": (0.0, 1e6, False),
    "leak_rate_hz": (0.0, 1e4, False),  # per pixel: ≤ 10 kHz, a real pixel's ceiling
    "leak_sigma": (0.0, 10.0, False),
    "shot_noise_rate_hz": (0.0, 1e4, False),
    "hot_pixel_fraction": (0.0, 1.0, False),
    "hot_pixel_rate_hz": (0.0, 1e4, False),
    "jitter_us": (0.0, 1e6, False),
    "latency_us": (0.0, 1e6, False),
    "linlog_dn": (0.0, 255.0, True),
    "highlight_knee_dn": (0.0, 255.0, True),
    "highlight_gain": (0.0, 100.0, False),
    "initial_offset": (0.0, 1.0, False),
    "noise_gate_sigmas": (0.0, 1000.0, False),
    "blur_px": (0.0, 50.0, False),  # σ in pixels
    "aps_read_noise_dn": (0.0, 255.0, False),
    "aps_shot_gain": (0.0, 255.0, False),
    "flow_scale": (0.1, 1.0, False),
    "max_px_per_step": (0.0, 1e4, True),
    "max_theta_fraction": (0.0, 100.0, True),
    "max_substeps": (1, 4096, False),
    "bridge_sigma": (0.0, 10.0, False),
}
SAFETY_BOUNDS = {"refractory_us", "cutoff_hz", "leak_rate_hz", "shot_noise_rate_hz", "hot_pixel_rate_hz",
                 "jitter_us", "latency_us", "blur_px", "max_substeps", "noise_gate_sigmas"}


def _why(name: str, high: float) -> str:
    if name in SAFETY_BOUNDS:
        return f"the upper bound {high:g} guards against runaway time and memory; to go past it edit RANGES in sim_events/params.py"
    return ""

# Each preset lists only what differs from the defaults above.
PRESETS: dict[str, dict[str, Any]] = {
    # DAVIS346 (iniVation): θ ≈ 0.25–0.3 at default biases (docs/explanation/references.md §1:
    # mean 0.2–0.3, σ 0.02–0.03); refractory ~0.1–1 ms (§1 there), we take 0.3 ms; cutoff 300 Hz
    # is v2e's "noisy" default; leak 0.01 Hz and shot noise 0.005 Hz lie in its §1 ranges; APS
    # frames carry ~1.5 DN read noise (measured on the shared DAVIS346 recording: MAD of frame
    # differences 1–2 DN), gated at 5σ.
    "davis346": dict(contrast_threshold_on=0.27, contrast_threshold_off=0.3, threshold_sigma=0.03,
                     refractory_us=300.0, cutoff_hz=300.0, leak_rate_hz=0.01, shot_noise_rate_hz=0.005,
                     jitter_us=50.0, noise_gate_sigmas=5.0, aps_read_noise_dn=1.5, aps_shot_gain=0.02),
    # DAVIS240: older, noisier 240×180 pixel; θ ~0.3 (our choice inside its §1 range), more leak.
    "davis240": dict(contrast_threshold_on=0.3, contrast_threshold_off=0.3, threshold_sigma=0.03,
                     refractory_us=500.0, cutoff_hz=200.0, leak_rate_hz=0.05, shot_noise_rate_hz=0.01,
                     jitter_us=100.0, noise_gate_sigmas=5.0, aps_read_noise_dn=2.0, aps_shot_gain=0.02),
    # DVXplorer: no APS (frames come from a video: gate off); faster, lower-threshold pixel —
    # θ 0.2 and σ 0.02 are our choices at the low end of its §1 range; refractory 0.1 ms.
    "dvxplorer": dict(contrast_threshold_on=0.2, contrast_threshold_off=0.2, threshold_sigma=0.02,
                      refractory_us=100.0, cutoff_hz=500.0, leak_rate_hz=0.02, shot_noise_rate_hz=0.01,
                      jitter_us=100.0),
    # Prophesee Gen4 (IMX636-class): θ ≈ 0.25 at default biases (our assumption), low noise,
    # 1 µs timestamps with ~50 µs jitter (assumption), refractory 0.1 ms.
    "prophesee_gen4": dict(contrast_threshold_on=0.25, contrast_threshold_off=0.25, threshold_sigma=0.025,
                           refractory_us=100.0, cutoff_hz=1000.0, leak_rate_hz=0.01, shot_noise_rate_hz=0.002,
                           jitter_us=50.0),
    # clean: ideal pixel — equal thresholds, no mismatch, no refractory, no low-pass, no noise.
    "clean": dict(contrast_threshold_on=0.25, contrast_threshold_off=0.25, threshold_sigma=0.0,
                  refractory_us=0.0, cutoff_hz=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0,
                  hot_pixel_fraction=0.0, jitter_us=0.0, initial_offset=1.0),
}


def preset(name: str) -> DvsParams:
    """The DvsParams of preset ``name`` (davis240, davis346, dvxplorer, prophesee_gen4, clean):
    thresholds, mismatch, refractory period (µs), bandwidth (Hz), noise rates (Hz) of that sensor.
    ParameterError naming the presets on an unknown name."""
    if name not in PRESETS:
        raise ParameterError(f"preset {name!r} is unknown: use one of {', '.join(PRESETS)}")
    return DvsParams(**PRESETS[name])


def preset_dict(name: str) -> dict[str, Any]:
    """The preset's full parameter dict (base for --config / --set)."""
    return preset(name).to_dict()
