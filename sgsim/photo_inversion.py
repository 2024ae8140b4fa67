"""How a photo becomes a W+ latent, decided in one place for every entry point (invert, edit/direction/apply/video
--image, batch rows, the demo, the Python API): alignment, method and steps.

Methods: 'e4e' (a trained encoder, one forward pass, codes that stay editable), 'optimise' (NVIDIA's projector
then a W+ refinement; slow, needs no encoder) and 'e4e+optimise' (the W+ refinement started from the encoder's code,
with fewer steps). Unless asked, e4e is used when an encoder for the generator is at hand (given, a miniature world's
own beside its generator, or the published one in the cache), else optimisation.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError
from sgsim.inversion import InversionResult, ProgressCallback, invert, lpips_input
from sgsim.settings import INVERSION_METHODS, INVERT_STEPS, REFINE_STEPS

E4E, OPTIMISE, E4E_OPTIMISE = INVERSION_METHODS
# The published encoder (checkpoints manifest name) for each manifest generator it was trained with.
ENCODER_FOR_GENERATOR = {
    "ffhq": "e4e-ffhq",
    "stylegan2-ffhq-config-f": "e4e-ffhq",
    "stylegan2-car-config-f": "e4e-cars",
    "stylegan2-horse-config-f": "e4e-horse",
    "stylegan2-church-config-f": "e4e-church",
}
NameOrPath = Union[str, os.PathLike]


@dataclass(frozen=True)
class InversionPlan:
    """What will happen to a photo: whether it is face-aligned, the method and its steps, and why; run.json keeps it."""

    align: bool
    method: str  # one of INVERSION_METHODS
    reason: str  # why this method, in words, printed and recorded
    encoder: Optional[str] = None  # the encoder file the method reads (None for 'optimise')
    steps: int = INVERT_STEPS  # W fit steps (0 when an encoder gives the start)
    refine_steps: int = REFINE_STEPS  # W+ refinement steps
    align_reason: str = ""  # why the photo is face-aligned or centre-cropped, in words

    def record(self) -> dict:
        return asdict(self)

    def note(self) -> str:
        """The choice in one line, as every entry point prints it."""
        return f"inversion: {self.method} ({self.reason}); {self.align_reason}"


def encoder_for(generator: NameOrPath) -> Optional[str]:
    """The manifest name of the published encoder trained with this generator (a manifest name or a cached copy)."""
    from sgsim.components import manifest_generator

    return ENCODER_FOR_GENERATOR.get(manifest_generator(generator) or "")


def world_encoder_for(generator: NameOrPath) -> Optional[Path]:
    """The e4e encoder a built world keeps beside its generator (sgsim.worlds.WorldFiles.style_encoder, trained for it
    by `sgsim world build`), when `generator` is a world's generator file and the encoder is there."""
    from sgsim.worlds import GENERATOR_FILE, world_files

    path = Path(generator).expanduser()
    if path.name != GENERATOR_FILE or not path.is_file():
        return None
    encoder = world_files(path.parent).style_encoder
    return encoder if encoder.is_file() else None


def _cached(name: str) -> Optional[Path]:
    from checkpoints import entry
    from checkpoints.cache import cached_path

    path = cached_path(entry(name))
    return path if path.is_file() else None


def choose_inversion_method(generator: NameOrPath, requested: Optional[str] = None,
                            encoder: Optional[NameOrPath] = None) -> tuple[str, str, Optional[str]]:
    """(method, reason, encoder file or None) for inverting a photo with `generator`.

    `requested`: one of INVERSION_METHODS, or None to pick e4e when an encoder is at hand (`encoder`, a manifest name or
    path, else a world's own for its generator, else the published one for this generator in the cache) and
    optimisation otherwise. Asking for an encoder method without an encoder raises SgsimError saying how to get one."""
    if requested is not None and requested not in INVERSION_METHODS:
        raise SgsimError(f"unknown inversion method {requested!r}; choose one of {', '.join(INVERSION_METHODS)}")
    if requested == OPTIMISE:
        return OPTIMISE, "asked for (--method optimise)", None
    own = world_encoder_for(generator) if encoder is None else None
    published = encoder_for(generator) if encoder is None and own is None else None
    if encoder is not None:
        from checkpoints import resolve

        path, origin = resolve(encoder), f"the encoder given ({encoder})"
    elif own is not None:
        path, origin = own, f"the world's own encoder for this generator ({own})"
    elif published is not None:
        path, origin = _cached(published), f"the published encoder for this generator ({published})"
    else:
        path, origin = None, ""
    if path is None:
        if requested is not None:
            hint = (f"download it with `sgsim weights download {published}`" if published else
                    "no published encoder fits this generator; give one with --photo-encoder FILE")
            raise SgsimError(f"--method {requested} needs an e4e / pSp encoder for {generator}: {hint}; "
                             f"or use --method optimise")
        why = (f"{published} is not in the cache (`sgsim weights download {published}` makes photos take seconds)"
               if published else "no published encoder fits this generator")
        return OPTIMISE, f"no encoder at hand: {why}", None
    if requested is not None:
        return requested, f"asked for (--method {requested}), with {origin}", str(path)
    return E4E, f"{origin} is at hand: one forward pass instead of an optimisation", str(path)


def plan_photo_inversion(generator: NameOrPath, method: Optional[str] = None, encoder: Optional[NameOrPath] = None,
                         align: Optional[bool] = None, steps: int = INVERT_STEPS, refine_steps: int = REFINE_STEPS,
                         metadata: Optional[dict] = None) -> InversionPlan:
    """The photo policy of every command and the API (sgsim.editing.ImageSource.plan calls it): alignment
    (sgsim.alignment.alignment, from the generator's name and its file's `metadata`), method
    (choose_inversion_method) and steps: `steps` W fit then `refine_steps` W+ steps for 'optimise', the encoder's
    code alone for 'e4e', the code then `refine_steps` W+ steps for 'e4e+optimise'."""
    from sgsim.alignment import alignment

    chosen, reason, encoder_file = choose_inversion_method(generator, method, encoder)
    if chosen != OPTIMISE:
        steps, refine_steps = 0, 0 if chosen == E4E else refine_steps
    aligned, align_reason = alignment(generator, align, metadata)
    return InversionPlan(aligned, chosen, reason, encoder_file, steps, refine_steps, align_reason)


@dataclass
class PhotoInversion:
    """A photo's inversion under a plan, and how far the reconstruction is from the photo."""

    plan: InversionPlan
    result: InversionResult
    distances: dict[str, float] = field(default_factory=dict)  # "lpips", "identity" (faces), "pixel_mse"


def encode_photo(G, target: torch.Tensor, encoder_file: NameOrPath) -> torch.Tensor:
    """W+ code [1, num_ws, w_dim] of a photo [1, 3, R, R] in [-1, 1] from an e4e / pSp checkpoint fitted to G."""
    from sgsim.style_encoder_file import read_style_encoder

    loaded = read_style_encoder(encoder_file, G)
    device = next(G.parameters()).device
    size = loaded.encoder.config.input_size
    # The authors resize the aligned photo to 256 px (torchvision Resize, antialiased bilinear) before encoding.
    faces = F.interpolate(target.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        encoder = loaded.encoder.to(device)
        return encoder.codes(faces.to(device), loaded.latent_avg.to(device))


def run_plan(G, target: torch.Tensor, plan: InversionPlan, lpips=None, seed: int = 0,
             callback: Optional[ProgressCallback] = None) -> InversionResult:
    """Invert `target` ([1, 3, R, R] in [-1, 1]) as the plan says; an encoder's code is rendered with G's own noise."""
    if plan.method == OPTIMISE:
        return invert(G, target, steps=plan.steps, refine_steps=plan.refine_steps, lpips=lpips, seed=seed, callback=callback)
    code = encode_photo(G, target, plan.encoder)
    if plan.method == E4E_OPTIMISE:
        return invert(G, target, steps=0, refine_steps=plan.refine_steps, lpips=lpips, seed=seed, callback=callback,
                      start=code)
    with torch.no_grad():
        image = G.synthesis(code, noise_mode="const")
    return InversionResult(code, image, [], lpips is not None, {})


@torch.no_grad()
def reconstruction_distances(target: torch.Tensor, image: torch.Tensor, lpips=None, identity=None) -> dict[str, float]:
    """How far the reconstruction is from the photo: pixel MSE, LPIPS-VGG16 (when given) and, for faces, the
    ArcFace identity distance 1 - cos (when given); so a poor inversion shows before the edit."""
    target, image = target.float(), image.float().clamp(-1, 1).to(target.device)
    distances = {"pixel_mse": float(F.mse_loss(image, target))}
    if lpips is not None:
        distances["lpips"] = float(lpips.to(target.device)(lpips_input(image), lpips_input(target)).reshape(-1)[0])
    if identity is not None:
        distances["identity"] = float(identity.to(target.device)(image, target).reshape(-1)[0])
    return distances


def invert_photo_with_plan(G, target: torch.Tensor, plan: InversionPlan, lpips=None, identity=None, seed: int = 0,
                           callback: Optional[ProgressCallback] = None) -> PhotoInversion:
    """Invert a read photo by the plan and measure its reconstruction."""
    if getattr(G, "c_dim", 0):
        raise SgsimError(f"photos can be inverted only with unconditional generators; this one takes a {G.c_dim}-d label")
    result = run_plan(G, target, plan, lpips, seed, callback)
    return PhotoInversion(plan, result, reconstruction_distances(target, result.image, lpips, identity))


def invert_photo(G, image: Union[NameOrPath, torch.Tensor], plan: InversionPlan, lpips=None, identity=None,
                 seed: int = 0) -> tuple[torch.Tensor, PhotoInversion]:
    """The one path from a photo to a latent (the command line's, the jobs', the demo's and the Editor's): read it
    (FFHQ-aligned or centre-cropped as the plan says; a [1, 3, R, R] tensor in [-1, 1] is taken as it is), say the
    plan as a notice, invert it under a progress bar and measure the reconstruction (LPIPS, identity when given).
    Returns the target [1, 3, R, R] and the PhotoInversion."""
    import warnings

    from sgsim.errors import SgsimNotice
    from sgsim.progress import inversion_bar

    if isinstance(image, torch.Tensor):
        target = image.reshape(-1, *image.shape[-3:])
    else:
        from sgsim.alignment import import_faces_extra, read_photo

        if plan.align:
            import_faces_extra()  # a missing 'faces' extra fails with its install line
        target = read_photo(image, G.img_resolution, plan.align)
    warnings.warn(plan.note(), SgsimNotice, stacklevel=2)
    target = target.to(next(G.parameters()).device)
    with inversion_bar(plan.steps + plan.refine_steps, plan.method) as on_step:
        return target, invert_photo_with_plan(G, target, plan, lpips, identity, seed, on_step)


def inversion_record(image: Union[NameOrPath, torch.Tensor], inversion: PhotoInversion, seed: int) -> dict:
    """A photo's inversion as run.json records it: the photo, the plan (alignment, method, steps and why), the
    seed and the reconstruction's distances to the photo."""
    plan = inversion.plan.record()
    plan["method_reason"] = plan.pop("reason")
    named = str(image) if not isinstance(image, torch.Tensor) else "tensor"
    return {"image": named, **plan, "inversion_seed": seed, "reconstruction": inversion.distances}


def describe_distances(distances: dict[str, float]) -> str:
    """'LPIPS 0.312, identity 0.41, pixel MSE 0.020' for the reconstruction's distances to the photo."""
    names = {"lpips": "LPIPS", "identity": "identity", "pixel_mse": "pixel MSE"}
    return ", ".join(f"{names[key]} {distances[key]:.4g}" for key in names if key in distances)
