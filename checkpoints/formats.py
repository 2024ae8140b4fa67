"""Recognise a weights file's container from its first bytes, without unpickling or executing anything."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from checkpoints.errors import WeightsError
from checkpoints.manifest import formats

# torch.save's legacy (pre-1.6, non-zip) files open with a pickled magic number:
# PROTO 2, LONG1 of 10 bytes = 0x1950a86a20f9469cfc6c (torch/serialization.py MAGIC_NUMBER).
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # the PROTO opcode every pickle of protocol >= 2 starts with


def sniff_container(path: Path) -> str:
    """The container of `path`: safetensors, torchscript, torch-zip, torch-legacy, pickle, or unknown."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(16)
    size = path.stat().st_size
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        # TorchScript archives hold the module's source under <root>/code/; torch.save zips never do.
        return "torchscript" if any(name.split("/")[1:2] == ["code"] for name in names) else "torch-zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        # safetensors: u64 little-endian JSON header length, then the JSON header itself.
        if 8 + header_len <= size and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def check_format(path: Path, expected: str, what: str) -> None:
    """Raise WeightsError unless `path` is stored in a container the manifest format `expected` allows."""
    allowed = formats()[expected]
    found = sniff_container(path)
    if found not in allowed:
        seen = "match no weights container (an HTML error page or a truncated file?)" if found == "unknown" else f"are a {found} file"
        raise WeightsError(
            f"{path} is not the {expected} file {what} expects: its bytes {seen}, "
            f"expected {' or '.join(allowed)}; check that you picked the right file"
        )
