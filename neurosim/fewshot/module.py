"""Thin torch wrapper of :mod:`neurosim.fewshot.functional`: the NP-RepMet head with learnable
representatives (N classes × K, positive and negative)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurosim.fewshot import functional as F
from neurosim.fewshot.functional import NPRepMetParams


class NPRepMetHead(nn.Module):
    """Scores proposals against per-class positive and negative representatives.

    ``forward(e_pos (B, D), e_neg (B, D) or None) -> (P (B, N), logits (B, N + 1))`` (equations in
    :mod:`neurosim.fewshot.functional`). ``negatives=False`` (or ``params.beta = 0``) is RepMet.
    ``loss(e_pos, e_neg, labels, neg_labels)`` = cross-entropy + L_p + L_n. ``set_support`` is the
    few-shot replacement: it puts support representatives in place of the learned ones."""

    def __init__(self, num_classes: int, dim: int, params: NPRepMetParams = NPRepMetParams(),
                 negatives: bool = True, seed: int = 0):
        super().__init__()
        self.p = params.check()
        g = torch.Generator().manual_seed(seed)
        self.reps_pos = nn.Parameter(F.normalize(torch.randn(num_classes, self.p.k, dim, generator=g)))
        self.reps_neg = nn.Parameter(F.normalize(torch.randn(num_classes, self.p.k, dim, generator=g))) if negatives else None

    def forward(self, e_pos: Tensor, e_neg: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return F.score(e_pos, self.reps_pos, e_neg, self.reps_neg, self.p)

    def loss(self, e_pos: Tensor, labels: Tensor, e_neg: Tensor | None = None,
             neg_labels: Tensor | None = None) -> Tensor:
        """CE(logits, labels) + L_p(labels) + L_n(neg_labels) (labels (B,), 0 = background;
        neg_labels (B,): the class a proposal is a hard negative of, 0 = none)."""
        _, logit = self(e_pos, e_neg)
        total = F.classification_loss(logit, labels) + F.embedding_loss_pos(e_pos, self.reps_pos, labels, self.p.embed_margin)
        if self.reps_neg is not None and neg_labels is not None:
            total = total + F.embedding_loss_neg(e_pos if e_neg is None else e_neg, self.reps_neg, neg_labels)
        return total

    @torch.no_grad()
    def set_support(self, reps_pos: Tensor, reps_neg: Tensor | None = None) -> None:
        """Replace the representatives by support ones (N, K, D) (fewer than K: repeated cyclically)."""
        self.reps_pos = nn.Parameter(F.normalize(reps_pos.to(torch.float32)))
        if self.reps_neg is not None and reps_neg is not None:
            self.reps_neg = nn.Parameter(F.normalize(reps_neg.to(torch.float32)))


def pad_reps(reps: list[Tensor], k: int) -> Tensor:
    """Stack per-class representatives (K_i, D), K_i ≤ k, into (N, k, D) by cycling each
    class's own rows (a repeated representative changes no max_j)."""
    return torch.stack([r[torch.arange(k) % r.shape[0]] for r in reps])
