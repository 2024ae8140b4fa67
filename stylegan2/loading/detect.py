"""Tell a checkpoint's container from its first bytes, never from its file name."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

from stylegan2.errors import CheckpointError

# The generator formats load_generator reads, for error messages.
FORMATS = {
    "safetensors": "sgsim safetensors (written by save_generator or `sgsim weights convert`)",
    "nvidia-pickle": "NVIDIA StyleGAN2-ADA / StyleGAN3 PyTorch pickle holding a StyleGAN2 generator",
    "tensorflow-pickle": "NVIDIA StyleGAN2 TensorFlow pickle (G, D, Gs)",
    "rosinality": "rosinality stylegan2-pytorch checkpoint (torch.save of g_ema)",
}

ZIP_MAGIC = b"PK\x03\x04"  # torch.save since torch 1.6
# torch.save before 1.6 starts with its pickled magic number (torch/serialization.py MAGIC_NUMBER, protocol 2).
TORCH_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
PICKLE_PROTO = 0x80  # first opcode of every pickle of protocol >= 2
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header


def expected_formats() -> str:
    """One line naming every supported format."""
    return "; ".join(FORMATS.values())


def _check_torch_zip(path: Path) -> None:
    """A zip must be complete and a torch.save archive; TorchScript archives hold code (<root>/code/)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        raise CheckpointError(f"{path} is a truncated or corrupt zip/torch.save file ({error}); "
                              "download or convert it again") from None
    if any(name.split("/")[1:2] == ["code"] for name in names):
        raise CheckpointError(f"{path} is a TorchScript archive (it contains code), not a generator checkpoint; "
                              f"expected one of: {expected_formats()}")


def sniff_container(path: Path) -> str:
    """'safetensors', 'torch' (torch.save zip or legacy) or 'pickle'; anything else raises CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; expected a generator checkpoint ({expected_formats()})")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a generator checkpoint file ({expected_formats()})")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty; download or convert it again")
    with path.open("rb") as stream:
        head = stream.read(16)
    if head.startswith(ZIP_MAGIC):
        _check_torch_zip(path)
        return "torch"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "torch"
    if head[0] == PICKLE_PROTO and len(head) > 1 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len > size - 8 or header_len > SAFETENSORS_MAX_HEADER:
            raise CheckpointError(f"{path} is a truncated safetensors file ({size} bytes, header claims "
                                  f"{header_len}); download or convert it again")
        return "safetensors"
    raise CheckpointError(f"{path} is not a generator checkpoint (it starts with {head[:8]!r}); "
                          f"expected one of: {expected_formats()}")
