"""Temporal complementary filter (TCF): slow absolute ANN estimates + fast relative SNN motion.

For every SNN step t (1 ms at 1 kHz) the box centre is

    x̂_t = α_t · (x̂_{t−1} + Δx_snn,t) + (1 − α_t) · x_ann,t

- ``x_ann,t``: the ANN's latest centre (computed at each frame, held between frames);
- ``Δx_snn,t = p_snn,t − p_snn,t−1``: the motion of the SNN's response peak in one step;
- ``α_t = α_frame`` at a step where a fresh ANN estimate arrives and ``α_hold`` otherwise.
  With α_frame = α_hold = α this is the textbook filter (high-pass on the SNN path, low-pass on
  the ANN path, crossover set by α); α_hold → 1 trusts the SNN between frames, α_frame → 0
  resets to the frame. Both are learnable (``α = σ(logit)``) or fixed (``learn_alpha=false``).
- ``alpha_hold = 1`` (config value ≥ 1) fixes α_hold to exactly 1, not learned: the textbook
  complementary filter for a slow absolute sensor — the ANN corrects the estimate only at the
  step its frame arrives, and between frames the estimate moves with the SNN alone. With
  α_hold < 1 the held (stale) ANN centre keeps pulling the estimate back to where the target was
  at the frame time, i.e. a lag that grows with the target's speed over the frame interval.

Scale: the box size comes from the ANN's scale head at each frame and is held between frames
(events give no reliable size change at 1 ms).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def complementary_filter(
    start: Tensor, snn_positions: Tensor, ann_positions: Tensor, fresh: Tensor,
    alpha_frame: Tensor, alpha_hold: Tensor,
) -> Tensor:
    """Run the filter over T steps.

    start (B, 2): x̂ before the first step; snn_positions (T+1, B, 2): p_snn at the step before
    the first and at each step; ann_positions (T, B, 2): held ANN centres; fresh (T,) bool.
    Returns x̂ (T, B, 2).
    """
    deltas = snn_positions[1:] - snn_positions[:-1]
    out, x = [], start
    for t in range(deltas.shape[0]):
        a = alpha_frame if bool(fresh[t]) else alpha_hold
        x = a * (x + deltas[t]) + (1 - a) * ann_positions[t]
        out.append(x)
    return torch.stack(out)


class TCF(nn.Module):
    """Learnable (or fixed) crossover α_frame, α_hold of :func:`complementary_filter`."""

    def __init__(self, alpha_frame: float = 0.3, alpha_hold: float = 0.98, learn: bool = True):
        super().__init__()
        logit = lambda a: math.log(a / (1 - a))  # noqa: E731
        self.logit_frame = nn.Parameter(torch.tensor(logit(alpha_frame)), requires_grad=learn)
        self.hold_is_one = alpha_hold >= 1.0
        # kept (unused, frozen) when α_hold ≡ 1 so checkpoints of both kinds share one layout
        self.logit_hold = nn.Parameter(torch.tensor(0.0 if self.hold_is_one else logit(alpha_hold)),
                                       requires_grad=learn and not self.hold_is_one)

    @property
    def alphas(self) -> tuple[Tensor, Tensor]:
        hold = torch.ones(()) if self.hold_is_one else torch.sigmoid(self.logit_hold)
        return torch.sigmoid(self.logit_frame), hold

    def forward(self, start: Tensor, snn_positions: Tensor, ann_positions: Tensor, fresh: Tensor) -> Tensor:
        a_f, a_h = self.alphas
        return complementary_filter(start, snn_positions, ann_positions, fresh, a_f, a_h)
