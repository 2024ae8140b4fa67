"""Render with other noise buffers: the per-layer noise an inversion fitted, swapped in for the generator's own."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from stylegan2.errors import NetworkConfigError


@contextmanager
def swapped_noise(G, noise: dict[str, torch.Tensor]) -> Iterator[None]:
    """Use these tensors (buffer name under G.synthesis -> tensor) as G's noise buffers inside the block;
    G's own come back afterwards, even on error."""
    modules = dict(G.synthesis.named_modules())
    originals = {}
    try:
        for name, value in noise.items():
            owner, _, attribute = name.rpartition(".")
            if owner not in modules or attribute not in modules[owner]._buffers:
                raise NetworkConfigError(f"the generator has no noise buffer {name!r}; this noise belongs to another generator")
            original = getattr(modules[owner], attribute)
            if tuple(value.shape) != tuple(original.shape):
                raise NetworkConfigError(f"noise {name!r} is shaped {list(value.shape)} but the generator's is {list(original.shape)}")
            originals[name] = original
            setattr(modules[owner], attribute, value)
        yield
    finally:
        for name, value in originals.items():
            owner, _, attribute = name.rpartition(".")
            setattr(modules[owner], attribute, value)
