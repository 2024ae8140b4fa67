"""Symmetric InfoNCE between two batches of embeddings with a proper CLIP temperature.

The reference multiplies cosine logits by exp(0.07) = 1.07 (a bug: docs/reference.md#reference-defects-fixed); CLIP divides
by a temperature of 0.07, i.e. multiplies by 14.3, learnable in log space and clamped at 100.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CLIP_TEMPERATURE = 0.07  # CLIP's initial temperature (Radford et al., 2021)
MAX_LOGIT_SCALE = 100.0  # CLIP clamps the learned scale here


class LogitScale(nn.Module):
    """exp(log_scale), clamped to [1, 100]; learnable (CLIP) or fixed."""

    def __init__(self, temperature: float = CLIP_TEMPERATURE, learnable: bool = True):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(1.0, MAX_LOGIT_SCALE)


def symmetric_info_nce(first: torch.Tensor, second: torch.Tensor, scale: torch.Tensor, groups: torch.Tensor | None = None,
                       positives: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the first->second and second->first cross-entropies over the scaled cosine logits.

    Row i of `first` pairs with row i of `second`. With `groups`, rows of equal group id are all
    positives of each other (several clips of one class share one label text), each with equal weight.
    With `positives` ([N, N] bool, the diagonal set), row j of `second` is a positive of row i of `first`
    where positives[i, j]: a caption true of several pictures ("something red") without being their only one.
    """
    logits = scale * F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T
    if groups is not None:
        positives = groups[:, None] == groups[None, :]
    if positives is None:
        targets = torch.arange(len(first), device=first.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    weights = positives.float()
    return (F.cross_entropy(logits, weights / weights.sum(dim=1, keepdim=True))
            + F.cross_entropy(logits.T, weights.T / weights.T.sum(dim=1, keepdim=True))) / 2
