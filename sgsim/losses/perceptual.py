"""The perceptual term: LPIPS-VGG16 distance of each image to its source image, which keeps what the edit
should not change (layout, texture) beyond what the latent distance alone holds."""

from __future__ import annotations

import torch

from sgsim.inversion import lpips_input
from sgsim.losses.base import EditProblem, StepLoss


class PerceptualDistance:
    """LPIPS(G(w), G(w_src)) per sample; the source's features are computed once per optimisation."""

    needs = ("lpips",)

    def prepare(self, problem: EditProblem) -> StepLoss:
        lpips = problem.networks["lpips"]
        with torch.no_grad():
            source = lpips.features(lpips_input(problem.source_images()))
        return lambda step: (lpips.features(lpips_input(step.images)) - source).square().sum(dim=1)
