"""Where an edit starts: a seed, a W or W+ latent (array or .npz file), or an image to invert."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from sgsim.errors import SgsimError

SEED_TRUNCATION = 0.7  # SGSIM / StyleCLIP start edits from w truncated halfway-plus toward w_avg

# Keys a latent file may hold, in order of preference: our own edit output ("source"), our
# `sgsim generate` output and the StyleGAN2-ADA projector's projected_w.npz ("w").
LATENT_KEYS = ("source", "w")
NOISE_PREFIX = "noise."  # npz keys of fitted noise buffers, e.g. noise.b8.conv0.noise_const


def seed_latent(generator, seed: int, truncation: float = SEED_TRUNCATION) -> torch.Tensor:
    """W+ [num_ws, w_dim] of a seed: z from numpy's RandomState(seed), as NVIDIA's generate.py draws it,
    mapped and truncated toward w_avg. Conditional generators get the all-zero label."""
    device = generator.mapping.w_avg.device
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, generator.z_dim)).float().to(device)
    c = torch.zeros(1, generator.c_dim, device=device)
    with torch.no_grad():
        return generator.mapping(z, c, truncation_psi=truncation)[0]


def as_w_plus(latent: np.ndarray | torch.Tensor, num_ws: int, w_dim: int) -> torch.Tensor:
    """A W ([w_dim] or [1, w_dim]) or W+ ([num_ws, w_dim] or [1, num_ws, w_dim]) latent as W+ [num_ws, w_dim]."""
    tensor = torch.as_tensor(np.asarray(latent) if not torch.is_tensor(latent) else latent).float()
    shape = tuple(tensor.shape)
    if shape in ((w_dim,), (1, w_dim)):
        return tensor.reshape(1, w_dim).repeat(num_ws, 1)
    if shape in ((num_ws, w_dim), (1, num_ws, w_dim)):
        return tensor.reshape(num_ws, w_dim)
    raise SgsimError(
        f"a latent must be W [{w_dim}] or W+ [{num_ws}, {w_dim}] for this generator, got shape {list(shape)}; "
        f"was it made with another generator?"
    )


def read_latent_file(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The latent stored in a .npz file (under 'source' or 'w', or its only array) and the noise buffers
    stored beside it as 'noise.<buffer name>' (sgsim invert and edit write them), by buffer name."""
    path = Path(path)
    if not path.is_file():
        raise SgsimError(f"latent file not found: {path}; check the path")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            stored = dict(arrays)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SgsimError(f"{path} is not a readable .npz latent file ({exc}); pass latents.npz from sgsim edit or generate") from None
    noise = {key.removeprefix(NOISE_PREFIX): value for key, value in stored.items() if key.startswith(NOISE_PREFIX)}
    latents = {key: value for key, value in stored.items() if not key.startswith(NOISE_PREFIX)}
    for key in LATENT_KEYS:
        if key in latents:
            return latents[key], noise
    if len(latents) == 1:
        return next(iter(latents.values())), noise
    raise SgsimError(f"{path} holds {sorted(latents)}, none of them named {' or '.join(LATENT_KEYS)}; save the latent as 'w'")
