"""The one home of the latent file format: .npz files of W / W+ latents and the noise buffers fitted with them.

Keys: 'w' (`sgsim generate`, `sgsim invert`, the StyleGAN2-ADA projector's projected_w.npz); an edit's
latents.npz holds 'source', 'edited' [T, num_ws, w_dim], 'swept' and 'strengths'. Noise buffers are
stored as 'noise.<buffer name>'. `FILE:KEY` picks one array, `FILE:edited[1]` one row of a stack.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from sgsim.errors import SgsimError

NOISE_PREFIX = "noise."  # npz keys of fitted noise buffers, e.g. noise.b8.conv0.noise_const
# What a bare FILE means, in order of preference. An edit's latents.npz holds its edited latents and the
# source it started from; the edit result is what a chained edit continues from, so 'edited' comes first
# (row 0: the first sound's edit; FILE:edited[N] picks another, FILE:source the unedited start).
LATENT_KEYS = ("edited", "w", "source")
MAX_UNPACKED_BYTES = 1 << 30  # a latent file's arrays unpacked; an edit's latents with 1024 px noise are a few MB
_READABLE = "pass latents.npz from sgsim edit, generate or invert"  # what to do about a file that is not a latent file
_KEY_PATTERN = re.compile(r"^(?P<key>[A-Za-z0-9_.]+?)(?:\[(?P<row>\d+)\])?$")


@dataclass
class LatentFile:
    """A latent read from a file: the array, the key (and row) it came from, and the noise stored beside it."""

    latent: np.ndarray  # W [w_dim] / W+ [num_ws, w_dim] (or with a leading 1)
    key: str  # e.g. 'w', 'edited[0]'
    noise: dict[str, np.ndarray] = field(default_factory=dict)  # buffer name -> array


def split_latent_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """'FILE' or 'FILE:KEY' (KEY may be 'name[row]') -> (path, key or None). A path that exists as given wins,
    so a file whose name holds a colon still opens."""
    text = os.fspath(spec)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    path, _, key = text.rpartition(":")
    if not path or not _KEY_PATTERN.match(key):
        return Path(text), None
    return Path(path), key


def _pick(path: Path, latents: Mapping[str, np.ndarray], key: str | None) -> tuple[np.ndarray, str]:
    """The array `key` names (default: the first of LATENT_KEYS present, or the only array)."""
    if key is None:
        present = [k for k in LATENT_KEYS if k in latents]
        if present:
            key = present[0]
        elif len(latents) == 1:
            key = next(iter(latents))
        else:
            raise SgsimError(f"{path} holds {sorted(latents)}, none of them named {' or '.join(LATENT_KEYS)}; "
                             f"pick one with {path}:KEY or save the latent as 'w'")
    match = _KEY_PATTERN.match(key)
    name, row = match.group("key"), match.group("row")
    if name not in latents:
        raise SgsimError(f"{path} has no latent {name!r}; it holds {sorted(latents)}")
    array = latents[name]
    if row is None and name == "edited":
        row = "0"  # an edit's latents are stacked per sound; the first is the default
    if row is not None:
        if array.ndim < 3 or int(row) >= array.shape[0]:
            raise SgsimError(f"{path}:{key}: {name} has shape {list(array.shape)}, no row {row}; "
                             f"rows are 0..{array.shape[0] - 1 if array.ndim >= 3 else 0}")
        array = array[int(row)]
        key = f"{name}[{row}]"
    return array, key


def unpacked_bytes(path: Path) -> int:
    """The bytes the arrays of the .npz at `path` unpack to, from its zip directory (nothing is inflated)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SgsimError(f"{path} is not a readable .npz latent file ({exc}); {_READABLE}") from None


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path`, refusing a plain .npy, a zip that unpacks past MAX_UNPACKED_BYTES and
    an array header claiming more memory than there is."""
    unpacked = unpacked_bytes(path)
    if unpacked > MAX_UNPACKED_BYTES:
        raise SgsimError(f"{path} unpacks to {unpacked} bytes, more than the {MAX_UNPACKED_BYTES >> 20} MiB a latent "
                         f"file may hold; it is not a latent file, {_READABLE}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return dict(arrays)
    except MemoryError:
        raise SgsimError(f"{path} claims an array larger than this machine's memory; it is not a latent file, {_READABLE}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SgsimError(f"{path} is not a readable .npz latent file ({exc}); {_READABLE}") from None


def _check_values(label: str, array: np.ndarray, what: str) -> None:
    """Refuse an array that is not real numbers, or whose values are not finite once cast to the float32 sgsim computes in."""
    if array.dtype.kind not in "fiu":
        raise SgsimError(f"{label} holds {array.dtype} values, not real numbers; it is not {what}")
    with np.errstate(over="ignore"):
        finite = np.isfinite(array.astype(np.float32)).all()
    if not finite:
        raise SgsimError(f"{label} contains NaN or infinite values (or values beyond float32); the file is damaged, write it again")


def read_latent_file(spec: str | os.PathLike) -> LatentFile:
    """The latent a .npz file (or 'FILE:KEY') holds and the noise buffers stored beside it, checked to be real and finite."""
    path, key = split_latent_spec(spec)
    if not path.is_file():
        raise SgsimError(f"latent file not found: {path}; check the path")
    stored = _load_arrays(path)
    noise = {k.removeprefix(NOISE_PREFIX): v for k, v in stored.items() if k.startswith(NOISE_PREFIX)}
    latents = {k: v for k, v in stored.items() if not k.startswith(NOISE_PREFIX)}
    if not latents:
        raise SgsimError(f"{path} holds no latent; pass latents.npz from sgsim edit, generate or invert")
    latent, key = _pick(path, latents, key)
    _check_values(f"{path}:{key}", latent, "a latent")
    for name in sorted(noise):
        _check_values(f"{path}: noise buffer {name}", noise[name], "a noise buffer")
    return LatentFile(latent=latent, key=key, noise=noise)


def noise_arrays(noise: Mapping[str, "np.ndarray"]) -> dict[str, np.ndarray]:
    """Noise buffers (name -> array or tensor) as the npz entries that store them."""
    return {f"{NOISE_PREFIX}{name}": np.asarray(value.cpu() if hasattr(value, "cpu") else value) for name, value in noise.items()}


def write_latent_file(path: str | os.PathLike, noise: Mapping[str, "np.ndarray"] | None = None, **latents: "np.ndarray") -> None:
    """Write latents (key -> array or tensor) and their noise buffers as one .npz file, atomically."""
    from sgsim.outputs import write_npz

    arrays = {key: np.asarray(value.cpu() if hasattr(value, "cpu") else value) for key, value in latents.items()}
    write_npz(path, **arrays, **noise_arrays(noise or {}))
