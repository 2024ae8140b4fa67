"""Which generator formats load_generator reads, and a checkpoint's container told from its bytes, never its name."""

from __future__ import annotations

from pathlib import Path

from checkpoints.containers import PICKLE, SAFETENSORS, TORCH_LEGACY, TORCH_ZIP, TORCHSCRIPT, ContainerError, check_complete, sniff_container
from stylegan2.errors import CheckpointError

# The generator formats load_generator reads, named as in checkpoints/manifest.json "formats", for error messages.
FORMATS = {
    "safetensors": "sgsim safetensors (written by save_generator or `sgsim weights convert`)",
    "nvidia-pickle": "NVIDIA StyleGAN2-ADA / StyleGAN3 PyTorch pickle (StyleGAN2, StyleGAN3-T or StyleGAN3-R generator)",
    "tf-pickle": "NVIDIA StyleGAN2 TensorFlow pickle (G, D, Gs)",
    "rosinality-pt": "rosinality stylegan2-pytorch checkpoint (torch.save of g_ema)",
}


def expected_formats() -> str:
    """One line naming every supported format."""
    return "; ".join(FORMATS.values())


def detect_container(path: Path) -> str:
    """'safetensors', 'torch-zip', 'torch-legacy' or 'pickle' for a complete file; anything else raises CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; expected a generator checkpoint ({expected_formats()})")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a generator checkpoint file ({expected_formats()})")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file (a pipe or device?); expected a generator checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; download or convert it again")
    container = sniff_container(path)
    if container == TORCHSCRIPT:
        raise CheckpointError(f"{path} is a TorchScript archive (it contains code), not a generator checkpoint; "
                              f"expected one of: {expected_formats()}")
    if container not in (SAFETENSORS, TORCH_ZIP, TORCH_LEGACY, PICKLE):
        with path.open("rb") as stream:
            head = stream.read(8)
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path} is a truncated or corrupt zip/torch.save file; download or convert it again")
        raise CheckpointError(f"{path} is not a generator checkpoint (it starts with {head!r}); "
                              f"expected one of: {expected_formats()}")
    try:
        check_complete(path, container)
    except ContainerError as error:
        raise CheckpointError(f"{path} is a truncated or corrupt {container} file ({error}); "
                              "download or convert it again") from None
    return container
