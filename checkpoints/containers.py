"""The one place that knows weights containers by their bytes: recognise one, and check that a file is complete.

A leaf module (standard library only) so that both the downloader (`checkpoints`) and the generator
loaders (`stylegan2`) use it without importing anything else of ours (tests/test_layout.py).
Nothing here unpickles, unzips members or executes anything from the file.
"""

from __future__ import annotations

import json
import os
import pickletools
import struct
import zipfile
from pathlib import Path

SAFETENSORS = "safetensors"
TORCHSCRIPT = "torchscript"
TORCH_ZIP = "torch-zip"  # torch.save since torch 1.6
TORCH_LEGACY = "torch-legacy"  # torch.save before 1.6
PICKLE = "pickle"
UNKNOWN = "unknown"

# torch.save's legacy files open with a pickled magic number:
# PROTO 2, LONG1 of 10 bytes = 0x1950a86a20f9469cfc6c (torch/serialization.py MAGIC_NUMBER).
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # the PROTO opcode every pickle of protocol >= 2 starts with
_PICKLE_STOP = "."  # the STOP opcode every complete pickle ends with
_HIGHEST_PICKLE_PROTOCOL = 5
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header
# Bytes per element of each safetensors dtype (safetensors/src/tensor.rs Dtype).
_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


class ContainerError(ValueError):
    """A file is not a complete, well-formed container; the message says what is wrong in one line."""


def sniff_container(path: str | os.PathLike) -> str:
    """The container of `path` from its bytes: safetensors, torchscript, torch-zip, torch-legacy, pickle or unknown."""
    path = Path(path)
    with path.open("rb") as stream:
        head = stream.read(16)
    if head.startswith(_ZIP_MAGIC):
        names = _zip_names(path)
        if names is None:
            return UNKNOWN
        # TorchScript archives hold the module's source under <root>/code/; torch.save zips never do.
        return TORCHSCRIPT if any(name.split("/")[1:2] == ["code"] for name in names) else TORCH_ZIP
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return TORCH_LEGACY
    if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= _HIGHEST_PICKLE_PROTOCOL:
        return PICKLE
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 little-endian JSON header length, then the JSON
        return SAFETENSORS
    return UNKNOWN


def check_complete(path: str | os.PathLike, container: str) -> None:
    """Raise ContainerError unless `path` is a whole `container` file: a cut download must never pass for one.

    safetensors: the header parses and every tensor's offsets lie inside the file and fit its dtype and shape;
    zips: the central directory is there; pickles: the opcode stream parses up to STOP at the end of the file.
    """
    path = Path(path)
    if container == SAFETENSORS:
        _check_safetensors(path)
    elif container in (TORCH_ZIP, TORCHSCRIPT):
        if _zip_names(path) is None:
            raise ContainerError("its zip central directory is missing or corrupt (a cut download?)")
    elif container == PICKLE:
        _check_pickle(path, pickles=1)
    elif container == TORCH_LEGACY:
        # magic number, protocol version, sys info, the object, storage keys; raw storage bytes follow.
        _check_pickle(path, pickles=5)
    else:
        raise ContainerError("its bytes match no weights container (an HTML error page or a truncated file?)")


def refusal_line(error: BaseException) -> str:
    """The line of torch.load(weights_only=True)'s refusal that names what was refused.

    torch's message opens with advice to retry with weights_only=False, which would run the file's payload;
    a user must never be shown that as the fix.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or [line for line in lines if "weights_only" not in line] or ["it holds more than plain tensors"])[0]


def _zip_names(path: Path) -> list[str] | None:
    """The member names of a zip whose central directory reads, else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None


def _check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise ContainerError(f"it has {size} bytes, too few for a safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > SAFETENSORS_MAX_HEADER or 8 + header_len > size:
            raise ContainerError(f"truncated safetensors header: it claims {header_len} bytes, the file has {size}")
        raw = stream.read(header_len)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ContainerError(f"its safetensors header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise ContainerError("its safetensors header is not a JSON object")
    data_size = size - 8 - header_len
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = info["data_offsets"]
            count = 1
            for dim in info["shape"]:
                if not isinstance(dim, int) or dim < 0:
                    raise TypeError
                count *= dim
            width = _SAFETENSORS_DTYPE_BYTES[info["dtype"]]
            valid = isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end
        except (TypeError, KeyError, ValueError):
            raise ContainerError(f"its safetensors entry {str(name)[:60]!r} is malformed") from None
        if not valid or end > data_size:
            raise ContainerError(f"tensor {str(name)[:60]!r} lies outside the file's {data_size} data bytes (cut short?)")
        if end - begin != count * width:
            raise ContainerError(f"tensor {str(name)[:60]!r} holds {end - begin} bytes, its dtype and shape need {count * width}")
        spans.append((begin, end))
    spans.sort()
    if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
        raise ContainerError("two of its safetensors tensors overlap")


class _BoundedReader:
    """A file view for pickletools that refuses a read past the end instead of allocating what a length field claims."""

    def __init__(self, stream, size: int):
        self.stream, self.size = stream, size

    def read(self, count: int = -1) -> bytes:
        if count > self.size - self.stream.tell():
            raise ContainerError(f"its pickle claims {count} bytes past the end of the file (cut short?)")
        return self.stream.read(count)

    def readline(self) -> bytes:
        return self.stream.readline()

    def tell(self) -> int:
        return self.stream.tell()


def _check_pickle(path: Path, pickles: int) -> None:
    """The first `pickles` opcode streams parse up to STOP; a lone pickle must end exactly at the end of the file."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        reader = _BoundedReader(stream, size)
        try:
            for _ in range(pickles):
                if not any(opcode.code == _PICKLE_STOP for opcode, _, _ in pickletools.genops(reader)):
                    raise ContainerError("its pickle has no STOP opcode (cut short?)")
        except (ValueError, EOFError, OverflowError, struct.error, UnicodeDecodeError, MemoryError) as error:
            if isinstance(error, ContainerError):
                raise
            raise ContainerError(f"its pickle is cut short or corrupt ({error})") from None
        end = stream.tell()
    if pickles == 1 and end != size:
        raise ContainerError(f"its pickle ends at byte {end} of {size}: extra bytes after STOP")
