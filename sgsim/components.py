"""The one place that turns a checkpoints-manifest name or a file path into a loaded component on a device.

Every loader returns the component with the weights file it was read from, for run.json's weights record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Optional, TypeVar, Union

import torch

T = TypeVar("T")
NameOrPath = Union[str, os.PathLike]
Device = Union[str, torch.device]

IDENTITY_WEIGHTS = "arcface-ir-se50"  # manifest name of the identity network used when none is given
LPIPS_WEIGHTS = "lpips-vgg16"  # manifest name of the perceptual distance used when none is given


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A component ready on its device, in eval mode without gradients, and the weights file it came from."""

    component: T
    weights: Optional[Path]  # None: the encoder was given no file to read (it has none)


def _frozen(module: T) -> T:
    return module.eval().requires_grad_(False)


def load_generator(name_or_path: NameOrPath, device: Device = "cpu") -> Loaded:
    """A StyleGAN2 generator (stylegan2.Generator) from any supported checkpoint, by manifest name or path."""
    from checkpoints import resolve
    from stylegan2 import load_generator as read_generator

    path = resolve(name_or_path)
    return Loaded(_frozen(read_generator(path, device=device)), path)


def load_audio_encoder(name: str, checkpoint: Optional[NameOrPath] = None, device: Device = "cpu") -> Loaded:
    """A registered audio encoder (encoders.AudioEncoder) with `checkpoint` (a manifest name or path), by default
    its released weights."""
    from checkpoints import resolve
    from encoders import available, load_audio_encoder as build_encoder

    released = {info.name: info.weights for info in available()}.get(str(name))
    path = resolve(checkpoint if checkpoint is not None else released) if checkpoint is not None or released else None
    return Loaded(_frozen(build_encoder(str(name), checkpoint=path, device=device)), path)


def load_clip_for(encoder, weights: Optional[NameOrPath] = None, device: Device = "cpu") -> Loaded:
    """The CLIP model (encoders ClipModel) whose space `encoder` embeds into, with `weights` (a manifest name or
    path), by default the weights that encoder was aligned with (encoders.load_clip_for)."""
    from checkpoints import resolve
    from encoders import load_clip_for as build_clip

    path = resolve(weights if weights is not None else encoder.clip_weights)
    return Loaded(_frozen(build_clip(encoder, weights=path, device=device)), path)


def load_identity(name_or_path: NameOrPath = IDENTITY_WEIGHTS, device: Device = "cpu") -> Loaded:
    """The ArcFace identity loss (sgsim.identity.IdentityLoss) with its network on `device`."""
    from checkpoints import resolve
    from sgsim.identity import IdentityLoss, read_arcface

    path = resolve(name_or_path)
    return Loaded(IdentityLoss(read_arcface(path).to(device)), path)


def load_lpips(name_or_path: NameOrPath = LPIPS_WEIGHTS, device: Device = "cpu") -> Loaded:
    """The LPIPS-VGG16 perceptual distance (sgsim.lpips.LpipsDistance) on `device`."""
    from checkpoints import resolve
    from sgsim.lpips import read_lpips

    path = resolve(name_or_path)
    return Loaded(read_lpips(path).to(device), path)


def manifest_generator(name_or_path: NameOrPath) -> Optional[str]:
    """The manifest name of a generator given by that name, or by a file that is a cached manifest generator:
    its cache path, or the sha256 the manifest or the cache recorded for one (hashed only when the size matches)."""
    from checkpoints import entries
    from checkpoints.cache import cached_path, recorded_checksums
    from checkpoints.download import sha256_file

    generators = {item.name: item for item in entries() if item.kind == "generator"}
    if str(name_or_path) in generators:
        return str(name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        return None
    recorded = recorded_checksums()
    size = path.stat().st_size
    digest: Optional[str] = None
    for name, item in generators.items():
        if cached_path(item).is_file() and cached_path(item).samefile(path):
            return name
        known = recorded.get(name, {})
        sha256 = item.sha256 or known.get("sha256")
        if sha256 and (item.size or known.get("size")) in (None, size):
            digest = digest or sha256_file(path)
            if digest == sha256:
                return name
    return None
