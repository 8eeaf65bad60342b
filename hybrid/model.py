"""DashNet: the hybrid tracker and its ablation variants, built from one :class:`ModelConfig`.

The tracker works one frame interval at a time (a *unit*): a search crop of S×S pixels around
the current estimate, the APS frame that opens the interval, and the event bins from W steps
before the frame (warm-up, used by attention and to refresh the SNN template) to the step before
the next frame (T steps). For each of the T steps it outputs a box (search-crop pixels).

Per unit (shapes B = batch, h = w = S/4):

1. ANN: ``F = ann(frame)``; template ``Z_a = sample(ann(template_frame), template_box)``.
2. SNN over all W+T bins: first-layer spikes ``S¹``, output trace ``r_t`` (snn_branch).
3. Attention (full, no_tcf), from the first-layer spikes S¹ of the W warm-up bins:
   ``R_a ← R_a + γ·A(S¹)`` on the ANN response of step 4 (``attention="response"``, default) or
   ``F' = F ⊙ (1 + γ·A(S¹))`` (``attention="features"``); see attention.py.
4. ANN response ``R_a = corr(F', Z_a)``; centre ``x_ann = softargmax(R_a / τ_ann)``; size
   ``wh = wh_prior · exp(head(sample(F', box at x_ann)))`` (scale estimation; with
   ``size_estimation="hold"`` the head is still trained but the box keeps the start size —
   the box loss uses centres only, so training is identical either way).
5. SNN template, refreshed each unit: ``Z_s = sample(mean_{warm-up} r_t, start box)``
   (+ ``adapter(Z_a)``, a 1×1 conv, in hybrid variants whose two templates have the same
   geometry: ``ann_template_size`` / ``ann_template_spacing`` may give the ANN its own);
   responses ``R_s,t = corr(r_t, Z_s)``, peaks ``p_snn,t = softargmax(R_s,t)``.
6. Output centre per variant:
   - ``ann_only``: x_ann held for all T steps (frame rate tracking, no events);
   - ``snn_only``: p_snn,t (no frames after the first; size kept);
   - ``no_tcf``: ``softargmax(w_a·R_a + w_s·R_s,t)`` (late fusion of responses);
   - ``no_attention``: TCF without step 3;  ``full``: TCF (tcf.py) with attention. The SNN's
     path is gated first: steps with a flat response (``snn_min_confidence``, :func:`gate_path`)
     and targets smaller than ``snn_min_target_px`` (:func:`hold_small_targets`) do not move it.

With ``target_model="dcf"`` steps 1, 3 and 4 are replaced at tracking time by the online target
model of ``hybrid.dcf`` (a correlation filter learned at every APS frame, with scale search):
the tracker passes its centre and size as ``ann_estimate`` and the variants fuse them as above
(``no_tcf`` needs response maps and is refused). Step 3's role, the events steering the frame
branch, is then taken by two things that ``full`` uses and ``no_attention`` and ``ann_only`` do not:

- event frames (``event_frames_hz`` > 0): between two APS frames the target model searches
  frames integrated from the APS frame and the events since it (``hybrid.event_frames``), at
  ``event_frames_hz`` in all, and the TCF takes each of their boxes as a fresh ANN estimate;
- event channels (``target_events`` > 0): the events of each frame interval, ON and OFF, as two
  more feature channels of the filter (``hybrid.dcf``).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from hybrid import ann as ann_mod
from hybrid import snn_branch
from hybrid.attention import SpikeAttention
from hybrid.tcf import TCF
from hybrid.template import Correlation, sample_template, soft_argmax

VARIANTS = ("ann_only", "snn_only", "no_tcf", "no_attention", "full")
STRIDE = 4


@dataclasses.dataclass
class ModelConfig:
    """Architecture and tracking parameters (all variants share them).

    Ranges: :data:`MODEL_RANGES` (checked by :meth:`check`, e.g. ``search_size`` in [16, 1024]).
    """

    variant: str = "full"
    search_size: int = 64  # S: search crop side in network pixels
    ann_channels: tuple[int, ...] = (8, 16, 16)  # 3 or more conv widths (ann.py)
    snn_channels: tuple[int, int, int] = (8, 16, 16)
    snn_tau: float = 0.5  # STBP membrane decay per step
    snn_threshold: float = 0.5
    trace_decay: float = 0.8  # λ of the SNN output trace
    template_size: int = 3  # k
    template_spacing: str = "box"  # "box": k samples across the target box; "cell": k×k feature cells at the target centre
    ann_template_size: int = 0  # the ANN template's k (0: template_size)
    ann_template_spacing: str = ""  # the ANN template's spacing ("": template_spacing)
    temperature: float = 1.0  # soft-argmax τ of the SNN's and the fused (no_tcf) responses
    ann_temperature: float = 1.0  # soft-argmax τ of the ANN centre x_ann (fitted by `neurosim tune`; the response loss ignores it)
    warmup_bins: int = 5  # W
    snn_rate_hz: float = 1000.0
    quant_scheme: str = "fp32"  # fp32 | wageubn | eoq (ANN branch, via neurosim.quant)
    size_estimation: str = "ann"  # "ann": box size from the ANN scale head each frame; "hold": keep the first box's size
    alpha_frame: float = 0.3
    alpha_hold: float = 0.98
    learn_alpha: bool = True
    attention: str = "response"  # "response": R_a + γ·A (motion prior); "features": F ⊙ (1 + γ·A)
    snn_min_confidence: float = 0.0  # TCF: SNN steps whose peak softmax probability is below this do not move the box (0: all do)
    snn_min_target_px: float = 0.0  # TCF: a target whose √(w·h) is under this many pixels is not moved by the SNN between frames (0: always is)
    target_model: str = "template"  # ANN branch at tracking time: "template" (first-frame template, steps 1–4) or "dcf" (online correlation filter, hybrid/dcf.py)
    target_reps: str = "off"  # with target_model="dcf": re-score its candidates by "np" positive + negative representatives, "p" positives only (RepMet), "off" (hybrid/target_reps.py)
    target_min_ratio: float = 0.5  # target_reps: response peaks ≥ this × the highest are candidates
    target_events: float = 0.0  # with target_model="dcf", variant full: weight of the event channels (ON, OFF) in the filter's features (0: frames only)
    target_redetect: float = 0.0  # with target_model="dcf", variant full: an APS peak under this × the running peak also searches the interval's event blobs (hybrid/dcf.py; 0: never)
    event_frames_hz: float = 0.0  # with target_model="dcf", variant full: rate of the frames (APS + event frames, hybrid/event_frames.py) the target model searches (0: APS frames only; the template model ignores it)
    event_contrast: float = 0.25  # C of the event frames: log intensity per event (> 0: this; 0: the sequence's own, hybrid.track.frame_contrast: its simulator's thresholds, capped_contrast for events read from event frames, else fitted online from the APS frames)
    capped_contrast: float = 1.0  # with event_contrast 0: C of events read from event frames (at most one per pixel and frame, so each stands for a change of unknown size)

    @property
    def ann_template(self) -> tuple[int, str]:
        """(k, spacing) of the ANN template (the SNN's unless overridden)."""
        return self.ann_template_size or self.template_size, self.ann_template_spacing or self.template_spacing

    def check(self) -> "ModelConfig":
        from neurosim.config import check_range
        from neurosim.errors import ParameterError

        if self.variant not in VARIANTS:
            raise ParameterError(f"model.variant {self.variant!r} is unknown: use one of {', '.join(VARIANTS)}")
        if len(self.ann_channels) < 3 or len(self.snn_channels) != 3 or min(self.ann_channels + self.snn_channels) < 1:
            raise ParameterError(f"model.ann_channels {list(self.ann_channels)} needs 3 or more widths and model.snn_channels "
                                 f"{list(self.snn_channels)} exactly 3, all ≥ 1")
        if self.search_size % STRIDE or self.search_size < 16:
            raise ParameterError(f"model.search_size {self.search_size} must be a multiple of {STRIDE} and ≥ 16")
        if self.quant_scheme not in ("fp32", "wageubn", "eoq"):
            raise ParameterError(f"model.quant_scheme {self.quant_scheme!r}: use fp32, wageubn or eoq")
        if not (0 < self.alpha_frame < 1) or not (0 < self.alpha_hold <= 1):
            raise ParameterError(f"model.alpha_frame {self.alpha_frame} must be in (0, 1) and model.alpha_hold {self.alpha_hold} in (0, 1] (1: SNN alone between frames)")
        if self.size_estimation not in ("ann", "hold"):
            raise ParameterError(f"model.size_estimation {self.size_estimation!r}: use ann or hold")
        if self.target_model not in ("template", "dcf"):
            raise ParameterError(f"model.target_model {self.target_model!r}: use template or dcf")
        if self.target_model == "dcf" and self.variant == "no_tcf":
            raise ParameterError("model.variant no_tcf fuses ANN and SNN response maps, which the dcf target model does not "
                                 "give: use ann_only, snn_only, no_attention or full (or model.target_model=template)")
        if self.target_reps not in ("np", "p", "off"):
            raise ParameterError(f"model.target_reps {self.target_reps!r}: use np, p or off")
        if self.attention not in ("response", "features"):
            raise ParameterError(f"model.attention {self.attention!r}: use response or features")
        if self.template_spacing not in ("box", "cell") or self.ann_template_spacing not in ("", "box", "cell"):
            raise ParameterError(f"model.template_spacing {self.template_spacing!r} / model.ann_template_spacing "
                                 f"{self.ann_template_spacing!r}: use box or cell (\"\" for the ANN: the same as the SNN)")
        if self.template_size < 1 or self.ann_template_size < 0:
            raise ParameterError(f"model.template_size {self.template_size} must be ≥ 1 and model.ann_template_size "
                                 f"{self.ann_template_size} ≥ 0 (0: the same as template_size)")
        if not (self.temperature > 0 and self.ann_temperature > 0):
            raise ParameterError(f"model.temperature {self.temperature} and model.ann_temperature {self.ann_temperature} must be > 0")
        if not (0 < self.snn_rate_hz <= 100_000):
            raise ParameterError(f"model.snn_rate_hz {self.snn_rate_hz} must be in (0, 100000]")
        for name, (low, high, low_open) in MODEL_RANGES.items():
            check_range(f"model.{name}", getattr(self, name), low, high, low_open=low_open,
                        why="to go past an upper bound edit MODEL_RANGES in hybrid/model.py")
        for width in self.ann_channels + self.snn_channels:
            check_range("model.ann_channels / model.snn_channels", width, 1, 1024)
        return self


# (low, high, low excluded) of each ModelConfig number; the upper bounds are far past any useful
# tracker (a 1024-pixel search crop already needs GBs per batch).
MODEL_RANGES: dict[str, tuple[float, float, bool]] = {
    "search_size": (16, 1024, False),
    "snn_tau": (0.0, 1.0, False),
    "snn_threshold": (0.0, 100.0, True),
    "trace_decay": (0.0, 1.0, False),
    "template_size": (1, 32, False),
    "ann_template_size": (0, 32, False),
    "temperature": (1e-6, 1000.0, False),  # below 1e-6 the softmax of a response map overflows
    "ann_temperature": (1e-6, 1000.0, False),
    "warmup_bins": (0, 1000, False),
    "alpha_frame": (0.0, 1.0, True),
    "alpha_hold": (0.0, 1.0, True),
    "snn_min_confidence": (0.0, 1.0, False),
    "snn_min_target_px": (0.0, 1024.0, False),
    "target_min_ratio": (0.0, 1.0, True),
    "target_events": (0.0, 10.0, False),
    "target_redetect": (0.0, 1.0, False),
    "event_frames_hz": (0.0, 100_000.0, False),
    "event_contrast": (0.0, 10.0, False),
    "capped_contrast": (0.0, 10.0, True),
}


class DashNet(nn.Module):
    """The hybrid tracker (see the module docstring); ``forward(unit) -> dict``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.check()
        c_a, c_s = cfg.ann_channels[-1], cfg.snn_channels[-1]
        self.uses_ann = cfg.variant != "snn_only"
        self.uses_snn = cfg.variant != "ann_only"
        self.uses_attention = cfg.variant in ("full", "no_tcf")
        self.ann = ann_mod.build_ann(cfg.ann_channels)
        if cfg.quant_scheme != "fp32":
            from neurosim.quant import quantize_model

            self.ann = quantize_model(self.ann, cfg.quant_scheme)
        self.snn = snn_branch.build_snn(cfg.snn_channels, cfg.snn_tau, cfg.snn_threshold)
        self.corr_ann = Correlation()
        self.corr_snn = Correlation()
        self.scale_head = nn.Linear(c_a * cfg.ann_template[0] ** 2, 2)
        nn.init.zeros_(self.scale_head.weight)
        nn.init.zeros_(self.scale_head.bias)
        self.adapter = nn.Conv2d(c_a, c_s, 1)
        nn.init.zeros_(self.adapter.weight)
        nn.init.zeros_(self.adapter.bias)
        self.attention = SpikeAttention(STRIDE // snn_branch.FIRST_STRIDE, mode=cfg.attention)
        self.tcf = TCF(cfg.alpha_frame, cfg.alpha_hold, cfg.learn_alpha)
        self.fusion = nn.Parameter(torch.tensor([1.0, 1.0]))  # w_a, w_s of no_tcf

    # ------------------------------------------------------------------ pieces
    def ann_features(self, frames: Tensor) -> Tensor:
        return self.ann(ann_mod.normalize_frames(frames))

    def template_box(self, box: Tensor, k: int, spacing: str) -> Tensor:
        """The region a k×k template is sampled over: the target box (``spacing="box"``) or the k×k
        feature cells centred on it (``"cell"``: sample spacing = the correlation's cell spacing,
        so template and search patches have the same geometry)."""
        if spacing == "box":
            return box
        c = box[:, :2] + (box[:, 2:] - 1) / 2
        return torch.cat([c - (k * STRIDE - 1) / 2, torch.full_like(c, float(k * STRIDE))], dim=1)

    def template(self, template_frame: Tensor, template_box: Tensor) -> Tensor:
        """Z_a (B, C, k, k) from a template frame (B, 1, S, S) and its box (B, 4)."""
        k, spacing = self.cfg.ann_template
        return sample_template(self.ann_features(template_frame), self.template_box(template_box, k, spacing), STRIDE, k)

    def forward(self, unit: dict[str, Tensor], z_ann: Tensor | None = None,
                ann_estimate: Tensor | None = None, ann_fresh: bool = True,
                ann_steps: Tensor | None = None) -> dict[str, Tensor]:
        """One unit. ``unit``: frame (B,1,S,S), events (B,W+T,2,S,S), start_box (B,4), and either
        ``z_ann`` or template_frame (B,1,S,S) + template_box (B,4). ``ann_estimate`` (B,4) xywh,
        crop pixels: the frame's box from an online target model (``target_model="dcf"``), used in
        place of the ANN's response; ``ann_fresh=False`` says the frame gave no new estimate (too
        dark to search): the unit then tracks with the SNN's peaks alone, as ``snn_only``.
        ``ann_estimate`` (T,B,4) with ``ann_steps`` (T,) bool: the target model's box at every step
        (the APS frame's at step 0, an event frame's from each step where ``ann_steps`` is True, held
        in between); the TCF takes each as a fresh ANN estimate (variants full and no_attention).
        Returns boxes (T,B,4) and the intermediate responses/positions used by the losses."""
        cfg = self.cfg
        W = cfg.warmup_bins
        step_estimates = None
        if ann_estimate is not None and ann_estimate.dim() == 3:
            step_estimates, ann_estimate = ann_estimate, ann_estimate[0]
        events = unit["events"].transpose(0, 1).float()  # (W+T, B, 2, S, S)
        T = events.shape[0] - W
        start = unit["start_box"].float()
        start_c = start[:, :2] + (start[:, 2:] - 1) / 2
        out: dict[str, Tensor] = {}
        x_ann = wh = r_a = None
        first = trace = None
        if self.uses_snn:
            first, spikes = self.snn(events)
            trace = snn_branch.leaky_trace(spikes, cfg.trace_decay)
        if self.uses_ann and ann_estimate is not None:
            x_ann = ann_estimate[:, :2] + (ann_estimate[:, 2:] - 1) / 2
            wh = ann_estimate[:, 2:]
            out.update(x_ann=x_ann)
        elif self.uses_ann:
            if z_ann is None:
                z_ann = self.template(unit["template_frame"], unit["template_box"])
            feats = self.ann_features(unit["frame"])
            if self.uses_attention and W > 0:
                feats = self.attention(feats, first[:W])
            r_a = self.corr_ann(feats, z_ann)
            if self.uses_attention and W > 0:
                r_a = self.attention.response(r_a, first[:W])
            x_ann = soft_argmax(r_a, STRIDE, cfg.ann_temperature)
            box_a = torch.cat([x_ann - (start[:, 2:] - 1) / 2, start[:, 2:]], dim=1)
            roi = sample_template(feats, box_a, STRIDE, cfg.ann_template[0]).flatten(1)
            dlog = self.scale_head(roi).clamp(-0.5, 0.5)
            wh = start[:, 2:] * torch.exp(dlog) if cfg.size_estimation == "ann" else start[:, 2:]
            out.update(r_ann=r_a, x_ann=x_ann, dlog_wh=dlog)
        if self.uses_snn:
            warm = trace[:W].mean(0) if W > 0 else torch.zeros_like(trace[0])
            k = cfg.template_size
            z_s = sample_template(warm, self.template_box(start, k, cfg.template_spacing), STRIDE, k)
            if z_ann is not None and cfg.ann_template == (k, cfg.template_spacing):  # same geometry only
                z_s = z_s + self.adapter(z_ann)
            r_s = self.corr_snn(trace, z_s)  # (W+T, B, h, w), one template per sequence
            p_snn = soft_argmax(r_s, STRIDE, cfg.temperature)  # (W+T, B, 2)
            out.update(r_snn=r_s, p_snn=p_snn)
        v = cfg.variant
        if v == "ann_only":
            centres = x_ann[None].expand(T, -1, -1)
        elif v == "snn_only" or not ann_fresh:  # no usable frame: the SNN's own peaks, as snn_only
            centres = p_snn[W:]
            wh = start[:, 2:]
        elif v == "no_tcf":
            fused = self.fusion[0] * r_a[None] + self.fusion[1] * r_s[W:]
            centres = soft_argmax(fused, STRIDE, cfg.temperature)
        else:
            prev = p_snn[W - 1 : W] if W > 0 else p_snn[:1]
            fresh = torch.zeros(T, dtype=torch.bool)
            fresh[0] = True
            path = torch.cat([prev, p_snn[W:]])
            if cfg.snn_min_confidence > 0:
                path = gate_path(path, torch.cat([r_s[W - 1 : W] if W > 0 else r_s[:1], r_s[W:]]),
                                 cfg.temperature, cfg.snn_min_confidence)
            if cfg.snn_min_target_px > 0:
                path = hold_small_targets(path, start[:, 2:], cfg.snn_min_target_px)
            ann_path = x_ann[None].expand(T, -1, -1)
            if step_estimates is not None:
                ann_path = step_estimates[..., :2] + (step_estimates[..., 2:] - 1) / 2
                fresh = ann_steps
            centres = self.tcf(start_c, path, ann_path, fresh)
        wh_t = wh[None].expand(T, -1, -1)
        out["boxes"] = torch.cat([centres - (wh_t - 1) / 2, wh_t], dim=-1)
        return out


def gate_path(positions: Tensor, responses: Tensor, temperature: float, min_confidence: float) -> Tensor:
    """SNN peak positions (T+1, B, 2) with the steps whose response is not confident frozen.

    Confidence of a step = the largest probability of ``softmax(R_s/τ)`` over the map (1/(h·w)
    for a flat map, 1 for a single peak); a step moves by ``Δp_t`` only when the confidence at
    t and t−1 is ≥ ``min_confidence``: a jump between an empty and a peaked map, or between two
    weak peaks, is not target motion."""
    conf = torch.softmax(responses.flatten(-2) / temperature, dim=-1).amax(-1)  # (T+1, B)
    ok = (conf[1:] >= min_confidence) & (conf[:-1] >= min_confidence)
    deltas = (positions[1:] - positions[:-1]) * ok[..., None]
    return torch.cat([positions[:1], positions[:1] + deltas.cumsum(0)])


def hold_small_targets(positions: Tensor, wh: Tensor, min_target_px: float) -> Tensor:
    """SNN peak positions (T+1, B, 2) with the path of every target whose √(w·h) (``wh`` (B, 2),
    pixels) is under ``min_target_px`` held at its first position: no SNN motion for it.

    The SNN's response map has cells of 4 px and its template k×k samples across the box, so a
    target under 4 cells (16 px) is one blob to it; with a moving camera its peak then follows
    any background blob, and the box drifts off a target the frames would keep."""
    small = (wh.prod(-1).sqrt() < min_target_px)[None, :, None]
    return torch.where(small, positions[:1].expand_as(positions), positions)


def check_variants(variants: str | list[str] | tuple[str, ...], option: str = "variants") -> list[str]:
    """Variant names from a list or a comma-separated string; ParameterError naming ``option``
    on an unknown one (the known ones are :data:`VARIANTS`)."""
    from neurosim.errors import ParameterError

    names = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise ParameterError(f"{option}: {bad[0]!r} is unknown: use {', '.join(VARIANTS)}")
    return names
