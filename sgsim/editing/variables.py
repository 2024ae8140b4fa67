"""What the edit loop optimises: the parameters Adam moves and the W+ latents they make.

FreeRows moves each latent on its own (sgsim edit); SharedOffset moves many source latents by one common
offset per sound (a sound's direction, learned over many images at once: sgsim direction).
"""

from __future__ import annotations

from typing import Iterable, Optional, Protocol

import torch

from sgsim.errors import SgsimError


class LatentVariables(Protocol):
    """The optimised parameters and the W+ latents [N, num_ws, w_dim] they currently stand for. Variables whose
    parameters' leading rows each belong to one sample say which in an attribute `samples` (a step then scales row by
    row; without it the parameters count as shared by all samples)."""

    def parameters(self) -> list[torch.Tensor]: ...

    def latents(self) -> torch.Tensor: ...


def free_rows(layers: Optional[Iterable[int]], num_ws: int) -> torch.Tensor:
    """The W+ rows the optimiser may move, checked against the generator's num_ws."""
    if layers is None:
        return torch.arange(num_ws)
    rows = sorted({int(i) for i in layers})
    if not rows or rows[0] < 0 or rows[-1] >= num_ws:
        raise SgsimError(f"layers must be W+ row indices in 0..{num_ws - 1}, got {list(layers)}")
    return torch.tensor(rows)


class FreeRows:
    """Each latent's rows `layers` (all by default) move freely; the other rows stay exactly as in `source`."""

    def __init__(self, source: torch.Tensor, layers: Optional[Iterable[int]] = None):
        self.source = source.detach()  # [N, num_ws, w_dim]
        self.rows = free_rows(layers, source.shape[1]).to(source.device)
        self.free = self.source[:, self.rows].clone().requires_grad_(True)
        self.samples = torch.arange(len(source))  # the sample of each row of `free` (a learning rate per sample)

    def parameters(self) -> list[torch.Tensor]:
        return [self.free]

    def latents(self) -> torch.Tensor:
        return self.source.index_copy(1, self.rows, self.free)


class SharedOffset:
    """`count` offsets [count, len(layers), w_dim], starting at zero, each added to the rows `layers` of every
    source latent: sample k * N + i of the batch is w_src_i + offset_k (offset k shared by all N sources, e.g.
    one per sound), so the batch is count x N latents."""

    def __init__(self, source: torch.Tensor, layers: Optional[Iterable[int]] = None, count: int = 1):
        if int(count) != count or count < 1:
            raise SgsimError(f"count of shared offsets must be a whole number >= 1, got {count}")
        self.source = source.detach()  # [N, num_ws, w_dim]
        self.rows = free_rows(layers, source.shape[1]).to(source.device)
        self.offset = torch.zeros(int(count), len(self.rows), source.shape[2], device=source.device, requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.offset]

    def sources(self) -> torch.Tensor:
        """The source latent of every sample of the batch [count * N, num_ws, w_dim] (what the loss terms keep near)."""
        return self.source.repeat(len(self.offset), 1, 1)

    def offsets(self) -> torch.Tensor:
        """Each offset over all of W+ [count, num_ws, w_dim] (zero outside `layers`)."""
        full = self.offset.new_zeros(len(self.offset), *self.source.shape[1:])
        return full.index_copy(1, self.rows, self.offset.detach())

    def batches(self, sources_per_step: Optional[int]) -> Optional[list[torch.Tensor]]:
        """Minibatches for optimise_latents: consecutive groups of `sources_per_step` sources, each with every
        offset (so every offset moves at every step); None (all sources every step) when that is all of them."""
        count, n = len(self.offset), len(self.source)
        if sources_per_step is None or sources_per_step >= n:
            return None
        if int(sources_per_step) != sources_per_step or sources_per_step < 1:
            raise SgsimError(f"sources per step must be a whole number >= 1, got {sources_per_step}")
        groups = torch.arange(n).split(int(sources_per_step))
        return [(torch.arange(count)[:, None] * n + group[None]).flatten() for group in groups]

    def latents(self) -> torch.Tensor:
        moved = self.source[None, :, self.rows] + self.offset[:, None]  # [count, N, rows, w_dim]
        latents = self.source.expand(len(self.offset), -1, -1, -1).index_copy(2, self.rows, moved)
        return latents.flatten(0, 1)
