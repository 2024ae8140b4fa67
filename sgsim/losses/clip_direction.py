"""The CLIP term: 1 - cos(CLIP(G(w)), target direction), the loss that makes the image show the target."""

from __future__ import annotations

import torch.nn.functional as F

from sgsim.losses.base import EditProblem, StepInputs, StepLoss


class ClipDirection:
    """1 - cosine similarity of each image's CLIP embedding with its target direction, times the sample's target
    weight (EditProblem.target_weights), so a sample without a target contributes nothing."""

    needs = ()

    def prepare(self, problem: EditProblem) -> StepLoss:
        clip, directions, weights = problem.clip, problem.directions, problem.target_weights

        def loss(step: StepInputs):
            features = F.normalize(clip.encode_image(step.images).float(), dim=-1)
            distance = 1.0 - (features * directions).sum(-1)
            return distance if weights is None else distance * weights

        return loss
