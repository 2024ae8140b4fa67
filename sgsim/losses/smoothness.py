"""The temporal smoothness term: keyframe latents optimised as one batch stay close to their neighbours (video)."""

from __future__ import annotations

import torch

from sgsim.losses.base import EditProblem, StepInputs, StepLoss


class TemporalSmoothness:
    """||w_i - w_{i+1}||^2 over W+ for each latent and the next one in the batch (the last scores 0): the batch
    is a sequence of keyframes in time order."""

    needs = ()

    def prepare(self, problem: EditProblem) -> StepLoss:
        def loss(step: StepInputs) -> torch.Tensor:
            gaps = (step.latents[1:] - step.latents[:-1]).square().flatten(1).sum(1)
            return torch.cat([gaps, gaps.new_zeros(1)])

        return loss
