"""Our own generator format: safetensors tensors plus the init kwargs as JSON metadata; loading runs no code."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from stylegan2.errors import CheckpointError
from stylegan2.loading.checkpoint import GeneratorCheckpoint
from stylegan2.networks import Generator

FORMAT_NAME = "sgsim-stylegan2"
FORMAT_VERSION = "1"
METADATA_PREFIX = "generator."  # G.metadata (e.g. the training set's name) kept as "generator.<key>" through a convert


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_generator(G: Generator, path: str | os.PathLike) -> Path:
    """Write G's state dict and init kwargs to a safetensors file, atomically (temp file beside it, then rename)."""
    target = Path(path)
    try:
        init_kwargs = json.dumps(G.init_kwargs, sort_keys=True)
    except TypeError as error:
        raise CheckpointError(f"cannot save to {target}: the generator's init kwargs are not JSON-able ({error})") from None
    # Copies: safetensors refuses tensors that share memory, and the file must not alias the live model.
    tensors = {key: value.detach().to("cpu", copy=True).contiguous() for key, value in G.state_dict().items()}
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "init_kwargs": init_kwargs}
    metadata.update({f"{METADATA_PREFIX}{key}": str(value) for key, value in getattr(G, "metadata", {}).items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temp_name, metadata=metadata)
        os.chmod(temp_name, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return target


def read_native(path: Path) -> GeneratorCheckpoint:
    """The init kwargs and state dict of a file written by save_generator."""
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = stream.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{path} is a safetensors file but not a generator saved by sgsim "
                                      f"(metadata format {metadata.get('format')!r}, expected {FORMAT_NAME!r}); "
                                      "convert the original checkpoint with `sgsim weights convert`")
            if metadata.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(f"{path} has format_version {metadata.get('format_version')!r}; this sgsim "
                                      f"reads version {FORMAT_VERSION}, convert the original checkpoint again")
            state_dict = {key: stream.get_tensor(key) for key in stream.keys()}
    except SafetensorError as error:
        raise CheckpointError(f"{path} is a truncated or corrupt safetensors file ({error})") from None
    try:
        init_kwargs = json.loads(metadata.get("init_kwargs", ""))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: its init_kwargs metadata is not valid JSON ({error})") from None
    if not isinstance(init_kwargs, dict):
        raise CheckpointError(f"{path}: its init_kwargs metadata is not a JSON object")
    kept = {key.removeprefix(METADATA_PREFIX): value for key, value in metadata.items() if key.startswith(METADATA_PREFIX)}
    return GeneratorCheckpoint(init_kwargs, state_dict, "safetensors", kept)
