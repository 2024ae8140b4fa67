"""SpecAugment as the SGSIM recipe uses it: 2 passes, each masking one run of time columns and one run of mel rows."""

from __future__ import annotations

import torch


def _run_mask(batch: int, length: int, max_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """[batch, length] bool: per row, one run of width U{0..floor(max_fraction * length)} at a uniform start."""
    widths = torch.randint(int(max_fraction * length) + 1, (batch, 1), generator=generator)
    starts = (torch.rand((batch, 1), generator=generator) * (length - widths + 1)).floor().long()
    positions = torch.arange(length)[None]
    return (positions >= starts) & (positions < starts + widths)


def spec_augment(
    log_mel: torch.Tensor,  # [B, n_mels, frames] front-end values in [0, 1]
    generator: torch.Generator,  # CPU generator: the masks are drawn on the CPU, so a seed gives the same masks on any device
    passes: int = 2,  # docs/reference.md#encoder-training: two passes
    max_time: float = 0.15,  # each pass masks up to 15 % of the time columns ...
    max_mel: float = 0.30,  # ... and up to 30 % of the mel rows
    fill: float = 0.0,  # masked value: the floor of the log-mel scale (top_db below the peak)
    first: int = 0,  # under torchrun: log_mel is rows first.. of a global batch of `total` rows, ...
    total: int | None = None,  # ... whose masks are drawn, so each row gets the mask a single process would give it
) -> torch.Tensor:
    """A masked copy of a batch of log-mel spectrograms."""
    batch, mels, frames = log_mel.shape
    total = batch if total is None else total
    masked = torch.zeros(total, mels, frames, dtype=torch.bool)
    for _ in range(passes):
        masked |= _run_mask(total, frames, max_time, generator)[:, None, :]
        masked |= _run_mask(total, mels, max_mel, generator)[:, :, None]
    return log_mel.masked_fill(masked[first:first + batch].to(log_mel.device), fill)
