"""LPIPS-VGG16 perceptual distance, read from NVIDIA's TorchScript `vgg16.pt` without running any of its code.

The file is a TorchScript zip: `<name>/data.pkl` pickles the module tree and `<name>/data/<key>` hold the raw
tensor storages. A whitelisting unpickler turns the tree into tensor references; only the 13 VGG16
convolutions and the 5 LPIPS channel weights are materialised (the 500 MB of classifier layers are never read).
Key names (`layers.conv1..13`, `lpips0..4` shaped [C, 1, 1]) as listed by genforce's converter of this file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from sgsim.errors import NetworkFileError
from stylegan2.loading.safe_pickle import view_problem

# VGG16's convolutions per stage; LPIPS compares the last ReLU output of each stage (relu1_2 ... relu5_3).
_CONVS_PER_STAGE = (2, 2, 3, 3, 3)

# LPIPS input scaling for images in [-1, 1] (richzhang/PerceptualSimilarity ScalingLayer); the same as
# ImageNet mean/std on [0, 1] images: (1 + shift) / 2 = (0.485, 0.456, 0.406), scale / 2 = (0.229, 0.224, 0.225).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# Feature normalisation epsilon of LPIPS (normalize_tensor).
_EPS = 1e-10

# No storage the reader materialises may be larger (VGG16's largest kept tensor, conv5 weights, has 2.4M
# elements), so a forged storage length or a zip bomb cannot make it read gigabytes.
_MAX_STORAGE_ELEMENTS = 1 << 24

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


# ---------------------------------------------------------------------------------------------------------------
# Reading tensors out of a TorchScript archive.


@dataclass(frozen=True)
class _StorageRef:
    """A storage in the archive, not yet read: `data/<key>`, its element type and length."""

    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A strided view of a storage, as `torch._utils._rebuild_tensor_v2` would build it."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _ScriptObject:
    """Stands in for any `__torch__.*` class: only keeps the attribute dict the pickle restores."""

    def __setstate__(self, state: dict) -> None:
        self.state = state


def _tensor_ref(storage, offset, size, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


def _as_list(values):
    return list(values)


def _untagged(value, _type_name):
    return value


# Every global a TorchScript data.pkl may name for plain modules, mapped to harmless stand-ins.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _tensor_ref,
    ("torch._utils", "_rebuild_tensor"): _tensor_ref,
    ("collections", "OrderedDict"): dict,
    ("torch.jit._pickle", "build_intlist"): _as_list,
    ("torch.jit._pickle", "build_doublelist"): _as_list,
    ("torch.jit._pickle", "build_boollist"): _as_list,
    ("torch.jit._pickle", "build_tensorlist"): _as_list,
    ("torch.jit._pickle", "build_genericlist"): _as_list,
    ("torch.jit._pickle", "restore_type_tag"): _untagged,
}


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript data.pkl into _ScriptObject trees and _TensorRefs; refuses every other global."""

    def __init__(self, stream, source: Path):
        super().__init__(stream)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise NetworkFileError(
            f"{self.source} names the global {module}.{name}, which a TorchScript VGG16 never needs; "
            f"refusing to read it (nothing from the file was run)"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise NetworkFileError(f"{self.source}: unexpected storage reference {pid!r} in data.pkl")
        if not _is_count(pid[4]):
            raise NetworkFileError(f"{self.source}: storage {str(pid[2])[:40]!r} has length {str(pid[4])[:40]}; the file is damaged")
        return _StorageRef(str(pid[2]), pid[1], pid[4])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _flatten(obj: _ScriptObject, prefix: str = "") -> dict[str, _TensorRef]:
    """The module tree's tensors under their state-dict names (submodule path + attribute)."""
    found = {}
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise NetworkFileError(f"a module's state in data.pkl is a {type(state).__name__}, expected a dict")
    for name, value in state.items():
        if isinstance(value, _TensorRef):
            found[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            found.update(_flatten(value, f"{prefix}{name}."))
    return found


def _archive_root(archive: zipfile.ZipFile, path: Path) -> str:
    """The archive's top folder (named after the file it was saved as), holding data.pkl."""
    roots = [name[: -len("data.pkl")] for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(roots) != 1:
        raise NetworkFileError(f"{path} is a zip file but not a TorchScript archive (no single <name>/data.pkl)")
    return roots[0]


def _materialise(archive: zipfile.ZipFile, root: str, ref: _TensorRef, path: Path) -> torch.Tensor:
    """One tensor, after its view, storage length and stored size are checked: nothing is read before that."""
    if not isinstance(ref, _TensorRef) or not isinstance(ref.storage, _StorageRef):
        raise NetworkFileError(f"{path}: data.pkl holds a malformed tensor; the file is damaged, download it again")
    problem = view_problem(ref.offset, ref.size, ref.stride, ref.storage.numel)
    if problem:
        raise NetworkFileError(f"{path}: {problem}")
    if not 0 <= ref.storage.numel <= _MAX_STORAGE_ELEMENTS:
        raise NetworkFileError(f"{path}: storage data/{ref.storage.key} claims {ref.storage.numel} elements, more than "
                               f"any LPIPS-VGG16 tensor ({_MAX_STORAGE_ELEMENTS}); the file is not vgg16.pt")
    itemsize = torch.empty((), dtype=ref.storage.dtype).element_size()
    name = f"{root}data/{ref.storage.key}"
    stored = archive.getinfo(name).file_size
    if stored != ref.storage.numel * itemsize:
        raise NetworkFileError(f"{path}: storage data/{ref.storage.key} has {stored} bytes, expected "
                               f"{ref.storage.numel * itemsize}; the file is damaged, download it again")
    raw = archive.read(name)
    flat = torch.frombuffer(bytearray(raw), dtype=ref.storage.dtype)
    return torch.as_strided(flat, ref.size, ref.stride, ref.offset).clone()


def read_torchscript_tensors(path: str | os.PathLike, keep: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    """The named tensors of a TorchScript module file for which `keep(name)` holds, read without torch.jit.load."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            root = _archive_root(archive, path)
            byteorder = archive.read(f"{root}byteorder").decode() if f"{root}byteorder" in archive.namelist() else "little"
            if byteorder.strip() != "little":
                raise NetworkFileError(f"{path} stores {byteorder} tensors; only little-endian archives are supported")
            with archive.open(f"{root}data.pkl") as stream:
                tree = _ArchiveUnpickler(stream, path).load()
            if not isinstance(tree, _ScriptObject):
                raise NetworkFileError(f"{path}: data.pkl holds a {type(tree).__name__}, not a TorchScript module")
            refs = _flatten(tree)
            return {name: _materialise(archive, root, ref, path) for name, ref in refs.items() if keep(name)}
    except FileNotFoundError:
        raise NetworkFileError(f"LPIPS weights file not found: {path}") from None
    except (zipfile.BadZipFile, KeyError, pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            IndexError, OverflowError, RecursionError, RuntimeError, UnicodeDecodeError) as exc:
        raise NetworkFileError(f"{path} is not a readable TorchScript archive ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); download it again") from None


# ---------------------------------------------------------------------------------------------------------------
# The network.


class LpipsDistance(nn.Module):
    """LPIPS with VGG16 features: distance(a, b) between images in [-1, 1], one value per image pair.

    `features(x)` is the flat vector whose squared Euclidean distances are LPIPS distances, like
    NVIDIA's `vgg16(x, resize_images=False, return_lpips=True)`: cache it for a fixed target.
    """

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512, 512)):
        super().__init__()
        self.layers = nn.ModuleDict()
        in_channels, index = 3, 1
        for width, count in zip(channels, _CONVS_PER_STAGE):
            for _ in range(count):
                self.layers[f"conv{index}"] = nn.Conv2d(in_channels, width, 3, padding=1)
                in_channels, index = width, index + 1
        for stage, width in enumerate(channels):
            self.register_buffer(f"lpips{stage}", torch.ones(width, 1, 1))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] to [N, F]: per stage, unit-length channel vectors weighted by sqrt(LPIPS weight)
        and by 1/sqrt(H*W), so that a squared difference sums to the spatial mean of the weighted distances."""
        x = (images - self.shift) / self.scale
        convs = iter(self.layers.values())
        parts = []
        for stage, count in enumerate(_CONVS_PER_STAGE):
            if stage > 0:
                x = F.max_pool2d(x, 2)
            for _ in range(count):
                x = F.relu(next(convs)(x))
            unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + _EPS)
            weight = getattr(self, f"lpips{stage}").sqrt() / (x.shape[2] * x.shape[3]) ** 0.5
            parts.append((unit * weight).flatten(1))
        return torch.cat(parts, dim=1)

    def forward(self, images: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """[N] distances of images [N, 3, H, W] to others [N or 1, 3, H, W] (one image: each of images against it)."""
        return (self.features(images) - self.features(others)).square().sum(dim=1)


def _is_lpips_tensor(name: str) -> bool:
    return name.startswith("lpips") or (name.startswith("layers.conv") and name.endswith((".weight", ".bias")))


def read_lpips(path: str | os.PathLike) -> LpipsDistance:
    """Build LpipsDistance from NVIDIA's TorchScript vgg16.pt (or any archive with its tensor names), in eval mode."""
    path = Path(path)
    tensors = read_torchscript_tensors(path, _is_lpips_tensor)
    try:
        for stage in range(len(_CONVS_PER_STAGE)):  # [C, 1, 1] in vgg16.pt; accept [1, C, 1, 1] (a conv weight) too
            tensors[f"lpips{stage}"] = tensors[f"lpips{stage}"].reshape(-1, 1, 1)
        channels = tuple(tensors[f"lpips{stage}"].shape[0] for stage in range(len(_CONVS_PER_STAGE)))
    except KeyError:
        raise NetworkFileError(
            f"{path} has no LPIPS weights lpips0..lpips4; expected NVIDIA's metrics/vgg16.pt "
            f"(`sgsim weights download lpips-vgg16`)"
        ) from None
    net = LpipsDistance(channels)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise NetworkFileError(f"{path} does not match the VGG16-LPIPS layout of vgg16.pt: {str(exc)[:400]}") from None
    return net.eval().requires_grad_(False)


def load_lpips(name_or_path: str | os.PathLike = "lpips-vgg16") -> LpipsDistance:
    """LPIPS-VGG16 from the weights cache (by manifest name) or a file path."""
    from checkpoints import resolve

    return read_lpips(resolve(name_or_path))


def load_lpips_if_present(name_or_path: str | os.PathLike = "lpips-vgg16") -> LpipsDistance | None:
    """LPIPS-VGG16, or None when those weights are not in the cache (inversion then warns and uses a pixel loss)."""
    from checkpoints import MissingWeightsError

    try:
        return load_lpips(name_or_path)
    except MissingWeightsError:
        return None
