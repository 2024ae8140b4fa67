"""Combining edited latents without re-optimising: the paper's layer-wise sound+text mix and strength sweeps."""

from __future__ import annotations

import torch


def coarse_rows(num_ws: int) -> int:
    """How many leading W+ rows come from the sound-guided latent in layer-wise mixing.

    The SGSIM paper takes layers 1-9 of the 18 of a 1024 px generator (rows 0..8) from the sound
    and 10-18 from the text; other resolutions keep the same proportion: the first half of W+
    (7 of 14 rows at 256 px), the coarse and middle styles that set layout and shape.
    """
    return round(num_ws * 9 / 18)


def mix_layers(sound_latents: torch.Tensor, text_latents: torch.Tensor) -> torch.Tensor:
    """W+ rows [0, coarse_rows) from the sound-guided latents, the rest from the text-guided ones."""
    split = coarse_rows(sound_latents.shape[-2])
    return torch.cat([sound_latents[..., :split, :], text_latents[..., split:, :]], dim=-2)


def move_by(source: torch.Tensor, offsets: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """The one strength rule: w_src + s * offset for each offset and strength: source [L, D], offsets [T, L, D],
    strengths [T, S] -> [T, S, L, D]. Strength 0 is the source exactly, 1 the full offset, > 1 exaggerates."""
    return source + torch.as_tensor(strengths)[..., None, None].to(offsets) * offsets[:, None]


def sweep_strengths(source: torch.Tensor, edited: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """Latents w_src + s (w_edit - w_src) for each strength: source [L, D], edited [T, L, D],
    strengths [T, S] -> [T, S, L, D]. Strength 0 is the source, 1 the optimised edit, > 1 exaggerates."""
    return move_by(source, edited - source, strengths)
