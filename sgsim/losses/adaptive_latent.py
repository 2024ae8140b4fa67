"""The official SGSIM script's adaptive layer masking of the latent term (`--adaptive_layer_masking`): each of the
first 14 W+ rows has its own weight sigmoid(m_i), and m_i falls as that row's term grows, so rows that must move
to show the sound are held less and less.

Update rule, per step and row i < 14 (kuai-lab/sound-guided-semantic-image-manipulation, run_optimization.py):
l_i = sigmoid(m_i) * ||w0_i - w_i||^2 (with m_i before this step's update); the term is sum_i l_i; then
m_i <- m_i - 0.1 * l_i * (1 - l_i) on plain numbers (no gradient reaches m). m starts at 1.
"""

from __future__ import annotations

import torch

from sgsim.losses.base import EditProblem, StepInputs, StepLoss

MASKED_ROWS = 14  # the official script masks the first 14 of FFHQ's 18 rows (fewer when the generator has fewer)
MASK_START = 1.0
MASK_RATE = 0.1


class AdaptiveLayerMasking:
    """sum_i sigmoid(m_i) ||w_i - w0_i||^2 over the first MASKED_ROWS rows, with m updated after every step as the
    official script does; one m per sample, so samples edited together follow their own masks."""

    needs = ()

    def prepare(self, problem: EditProblem) -> StepLoss:
        source = problem.source_latents
        rows = min(MASKED_ROWS, source.shape[1])
        mask = torch.full((source.shape[0], rows), MASK_START, dtype=torch.float64)

        def loss(step: StepInputs) -> torch.Tensor:
            per_row = torch.sigmoid(mask).to(source.device, torch.float32) * (step.latents[:, :rows] - source[:, :rows]).square().sum(-1)
            values = per_row.detach().double().cpu()
            mask.sub_(MASK_RATE * values * (1 - values))
            return per_row.sum(1)

        return loss
