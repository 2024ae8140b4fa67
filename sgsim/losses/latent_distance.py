"""The latent term: ||w - w_src||^2 over all of W+, which keeps the edit near its source (SGSIM's lambda_similarity)."""

from __future__ import annotations

from sgsim.losses.base import EditProblem, StepLoss


class LatentDistance:
    """Sum of squares of each latent's distance to its source latent."""

    needs = ()

    def prepare(self, problem: EditProblem) -> StepLoss:
        source = problem.source_latents
        return lambda step: (step.latents - source).square().flatten(1).sum(1)
