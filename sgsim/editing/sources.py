"""Where an edit starts: a seed, a W or W+ latent (array; files: sgsim.latents), an image to invert, or the generator's
mean latent (free generation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from sgsim.errors import SgsimError
from sgsim.settings import INVERSION_METHODS, INVERT_STEPS, REFINE_STEPS, SEED_TRUNCATION  # noqa: F401  (SEED_TRUNCATION: sgsim.editing.sources.SEED_TRUNCATION, as before)



@dataclass(frozen=True)
class SeedSource:
    """Start from the image of a seed (of class `class_index` for a conditional generator)."""

    seed: int
    class_index: Optional[int] = None


@dataclass(frozen=True)
class LatentSource:
    """Start from a W [w_dim] or W+ [num_ws, w_dim] latent, rendered with `noise` (buffer name -> tensor) if given:
    the noise an inversion fitted with it (sgsim invert saves both)."""

    latent: Union[np.ndarray, torch.Tensor]
    noise: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MeanSource:
    """Start from the generator's mean latent w_avg on every W+ row: free generation (the official script's
    mean_latent start), where the edit minimises the CLIP term alone, nothing to stay close to."""


@dataclass(frozen=True)
class ImageSource:
    """Start from a photo: a file, or a [1, 3, H, W] tensor in [-1, 1]; it is inverted first (sgsim.photo_inversion).

    `align`, `method` (sgsim.settings.INVERSION_METHODS) and `encoder` (an e4e / pSp file or manifest name) left None
    are decided by the one photo policy (plan): a file is FFHQ-aligned for a face generator and centre-cropped
    otherwise; e4e when an encoder for the generator is at hand, else optimisation."""

    image: Union[str, Path, torch.Tensor]
    align: Optional[bool] = None
    method: Optional[str] = None
    encoder: Optional[Union[str, Path]] = None

    def __post_init__(self):
        if self.method is not None and self.method not in INVERSION_METHODS:
            raise SgsimError(f"unknown inversion method {self.method!r}; choose one of {', '.join(INVERSION_METHODS)}")

    def plan(self, generator: Union[str, Path], steps: int = INVERT_STEPS, refine_steps: int = REFINE_STEPS,
             metadata: Optional[dict] = None):
        """How this photo is inverted for `generator` (its name or path, and its file's `metadata` once loaded):
        the InversionPlan of sgsim.photo_inversion.plan_photo_inversion, the policy every entry point follows."""
        from sgsim.photo_inversion import plan_photo_inversion

        return plan_photo_inversion(generator, self.method, self.encoder, self.align, steps, refine_steps, metadata)

    def with_settings(self, settings) -> "ImageSource":
        """This source with the photo settings of an EditSettings (align, inversion_method, photo_encoder) where it
        leaves them open."""
        return dataclasses.replace(
            self, align=settings.align if self.align is None else self.align,
            method=settings.inversion_method if self.method is None else self.method,
            encoder=settings.photo_encoder if self.encoder is None else self.encoder)


Source = Union[SeedSource, LatentSource, ImageSource, MeanSource]


def as_source(source: object) -> Source:
    """A typed source, with the shorthands that cannot be mistaken: an int is a seed, a path an image file, an
    array or tensor a latent (wrap an image tensor in ImageSource)."""
    if isinstance(source, (SeedSource, LatentSource, ImageSource, MeanSource)):
        return source
    if isinstance(source, (bool, np.bool_)):
        raise SgsimError(f"source must be a seed, a latent or an image, got {source!r}")
    if isinstance(source, (int, np.integer)):
        return SeedSource(int(source))
    if isinstance(source, (str, Path)):
        return ImageSource(source)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return LatentSource(source)
    raise SgsimError(f"source must be a seed (int), an image path, a latent array or a SeedSource / LatentSource / "
                     f"ImageSource / MeanSource, got {type(source).__name__}")


def class_label(generator, class_index: int | None) -> torch.Tensor:
    """The label c [1, c_dim] a seed is mapped with: one-hot of `class_index` for a conditional generator
    (as NVIDIA's generate.py --class), empty for an unconditional one; a missing or impossible class is an error."""
    classes = generator.c_dim
    device = generator.mapping.w_avg.device
    if class_index is None:
        if classes:
            raise SgsimError(f"this generator is conditional with {classes} classes: pass a class index 0..{classes - 1} "
                             f"(class_index=N; sgsim edit / generate: --class N)")
        return torch.zeros(1, 0, device=device)
    if not classes:
        raise SgsimError(f"this generator is unconditional: it takes no class, got class {class_index!r}; leave out class_index / --class")
    if isinstance(class_index, (bool, np.bool_)) or not isinstance(class_index, (int, np.integer)) or not 0 <= class_index < classes:
        raise SgsimError(f"class {class_index!r} is not a class of this generator: it has {classes} classes, pass 0..{classes - 1}")
    return torch.nn.functional.one_hot(torch.tensor([int(class_index)], device=device), classes).float()


def seed_latent(generator, seed: int, truncation: float = SEED_TRUNCATION, class_index: int | None = None) -> torch.Tensor:
    """W+ [num_ws, w_dim] of a seed: z from numpy's RandomState(seed), as NVIDIA's generate.py draws it,
    mapped with the class's label (conditional generators only) and truncated toward w_avg."""
    c = class_label(generator, class_index)
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, generator.z_dim)).float().to(c.device)
    with torch.no_grad():
        return generator.mapping(z, c, truncation_psi=truncation)[0]


def mean_latent(generator) -> torch.Tensor:
    """W+ [num_ws, w_dim]: the generator's tracked mean w (mapping.w_avg) on every row, detached."""
    w_avg = getattr(generator.mapping, "w_avg", None)
    if w_avg is None:
        raise SgsimError("this generator tracks no mean latent (mapping.w_avg): free generation needs one; start from a seed instead")
    return w_avg.detach().float().reshape(1, -1).repeat(generator.num_ws, 1)


def as_w_plus(latent: np.ndarray | torch.Tensor, num_ws: int, w_dim: int) -> torch.Tensor:
    """A W ([w_dim] or [1, w_dim]) or W+ ([num_ws, w_dim] or [1, num_ws, w_dim]) latent as W+ [num_ws, w_dim]."""
    tensor = torch.as_tensor(np.asarray(latent) if not torch.is_tensor(latent) else latent).float()
    shape = tuple(tensor.shape)
    if shape in ((w_dim,), (1, w_dim)):
        return tensor.reshape(1, w_dim).repeat(num_ws, 1)
    if shape in ((num_ws, w_dim), (1, num_ws, w_dim)):
        return tensor.reshape(num_ws, w_dim)
    raise SgsimError(
        f"a latent must be W [{w_dim}] or W+ [{num_ws}, {w_dim}] for this generator, got shape {list(shape)}; "
        f"was it made with another generator?"
    )
