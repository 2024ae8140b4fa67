"""The official script's adaptive layer masking: sgsim's term, run by sgsim's loop, against the official loop's update
rule written out here step by step (run_optimization.py, --adaptive_layer_masking)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sgsim.editing.optimise import optimise_latents
from sgsim.editing.sources import seed_latent

STEPS, LR, LAMBDA = 12, 0.1, 0.05


def official_lr(t: float, initial_lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The official script's get_lr (StyleCLIP's), written from its definition."""
    lr_ramp = min(1, (1 - t) / rampdown)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
    lr_ramp = lr_ramp * min(1, t / rampup)
    return initial_lr * lr_ramp


def official_loop(G, clip, source: torch.Tensor, direction: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """The official edit loop with adaptive layer masking (one latent, batch 1), the CLIP term as sgsim's."""
    latent = source.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=LR)
    mask = torch.ones(14)
    masks = []
    rows = min(14, source.shape[1])
    for i in range(STEPS):
        optimizer.param_groups[0]["lr"] = official_lr(i / STEPS, LR)
        image = G.synthesis(latent, noise_mode="const")
        clip_loss = 1 - (F.normalize(clip.encode_image(image), dim=-1) * direction).sum(-1)
        similarity = 0
        for idx in range(rows):
            per_layer = torch.sigmoid(mask[idx]) * ((source[:, idx, :] - latent[:, idx, :]) ** 2).sum()
            similarity = similarity + per_layer
            mask[idx] = mask[idx] - 0.1 * per_layer.item() * (1 - per_layer.item())
        loss = LAMBDA * similarity + clip_loss.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        masks.append(mask[:rows].clone())
    return latent.detach(), masks


def test_the_mask_follows_the_official_update_rule_step_by_step(editor):
    G = editor.generator
    source = seed_latent(G, 3)[None]
    direction = F.normalize(torch.randn(1, editor.clip.embed_dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected, masks = official_loop(G, editor.clip, source, direction)
    result = optimise_latents(G, editor.clip, source, direction, steps=STEPS, lr=LR,
                              weights={"clip": 1.0, "adaptive_latent": LAMBDA})
    # float32 Adam over a dozen steps from the same start: agreement to rounding, far below one step's move (~lr)
    assert torch.allclose(result.latents, expected, atol=1e-4, rtol=0)
    assert not torch.allclose(expected, source, atol=1e-3)  # the edit moved, so the comparison says something
    assert masks[-1].min() < 1.0  # the rule changed the mask
    # The masked term as recorded: sum_i sigmoid(m_i) ||w_i - w0_i||^2 with m before the step's update
    plain = optimise_latents(G, editor.clip, source, direction, steps=STEPS, lr=LR, weights={"clip": 1.0, "latent": LAMBDA})
    assert not torch.allclose(plain.latents, expected, atol=1e-4)  # the plain latent term differs: masking matters


def test_rows_past_the_fourteenth_are_free_and_each_sample_keeps_its_own_mask():
    from sgsim.losses import EditProblem, StepInputs
    from sgsim.losses.adaptive_latent import AdaptiveLayerMasking

    source = torch.zeros(2, 18, 4)
    term = AdaptiveLayerMasking().prepare(EditProblem(None, None, torch.zeros(2, 4), source))
    moved = source.clone()
    moved[0, :, 0] = 0.5  # sample 0 moves every row by 0.5 -> 0.25 per row; sample 1 stays
    first = term(StepInputs(moved, torch.zeros(2, 3, 4, 4)))
    sig = 1 / (1 + math.exp(-1.0))
    assert first[0].item() == pytest.approx(14 * sig * 0.25) and first[1].item() == 0.0  # rows 14..17 not counted
    second = term(StepInputs(moved, torch.zeros(2, 3, 4, 4)))
    l = sig * 0.25
    m = 1.0 - 0.1 * l * (1 - l)
    assert second[0].item() == pytest.approx(14 * 0.25 / (1 + math.exp(-m)), rel=1e-6)
    assert second[1].item() == 0.0
