"""The identity term: 1 - cos(ArcFace(G(w)), ArcFace(G(w_src))), which keeps a face the same person."""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from sgsim.losses.base import EditProblem, StepLoss


class IdentityDistance(Protocol):
    """to_source(source_images)(images) -> [N] identity distances, differentiable in `images` (sgsim.identity.IdentityLoss)."""

    def to_source(self, source_images: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]: ...


class IdentityTerm:
    """The identity network's distance of each image to its source image; the source is embedded once per optimisation."""

    needs = ("identity",)

    def prepare(self, problem: EditProblem) -> StepLoss:
        identity: IdentityDistance = problem.networks["identity"]
        distance = identity.to_source(problem.source_images())
        return lambda step: distance(step.images)
