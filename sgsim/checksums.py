"""The checksums sgsim records: of a file's bytes (checkpoints.download.sha256_file, the one the weights cache checks)
and of a network's weights whatever file they came from (state_sha256)."""

from __future__ import annotations

import hashlib

import torch

from checkpoints.download import sha256_file  # noqa: F401  (the one file checksum; imported from here by sgsim)


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 of a network's state dict (names, dtypes, shapes and values in order): the same weights give the
    same checksum whatever file format they were read from. Directions record it; embedding caches are keyed by it."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{key}:{tensor.dtype}:{list(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
