"""neurosim.fewshot: the NP-RepMet few-shot head (positive and negative representatives).

Pure functions in :mod:`neurosim.fewshot.functional` (scores, losses, representative update,
few-shot replacement from support proposals), a thin module in :mod:`neurosim.fewshot.module`.
The equations: docs/explanation/fewshot.md. Public names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "NPRepMetParams": "neurosim.fewshot.functional",
    "NPREPMET_RANGES": "neurosim.fewshot.functional",
    "score": "neurosim.fewshot.functional",
    "rep_distances": "neurosim.fewshot.functional",
    "class_scores": "neurosim.fewshot.functional",
    "logits": "neurosim.fewshot.functional",
    "classification_loss": "neurosim.fewshot.functional",
    "embedding_loss_pos": "neurosim.fewshot.functional",
    "embedding_loss_neg": "neurosim.fewshot.functional",
    "update_representatives": "neurosim.fewshot.functional",
    "support_representatives": "neurosim.fewshot.functional",
    "kmeans": "neurosim.fewshot.functional",
    "box_iou": "neurosim.fewshot.functional",
    "nms": "neurosim.fewshot.functional",
    "NPRepMetHead": "neurosim.fewshot.module",
    "pad_reps": "neurosim.fewshot.module",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from neurosim.fewshot.functional import (NPREPMET_RANGES, NPRepMetParams, box_iou, class_scores, classification_loss,
                                             embedding_loss_neg, embedding_loss_pos, kmeans, logits, nms, rep_distances,
                                             score, support_representatives, update_representatives)
    from neurosim.fewshot.module import NPRepMetHead, pad_reps
