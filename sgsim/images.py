"""The one image reader: any user image in as a generator-sized tensor (the writers live in sgsim.outputs)."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from sgsim.errors import ImageError, SgsimNotice

# Full-scale value of the single-channel modes that are not 8-bit. Pillow opens 16-bit PNGs as
# 'I' or 'I;16*', so 'I' is read on the 16-bit scale; float images ('F') on [0, 1].
_FULL_SCALE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}

# Upscaling a source side by more than this factor is worth a warning: the result will look soft.
_MAX_UPSCALE = 2.0


@contextlib.contextmanager
def _truncated_images_refused() -> Iterator[None]:
    """Make Pillow raise on a truncated file even if some other library allowed them globally."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _open_fully(path: Path) -> Image.Image:
    """Open and decode the whole file now, so a truncated or foreign file fails here, naming the file."""
    if not path.exists():
        raise ImageError(f"image file not found: {path}; check the path")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file; pass the path of one image")
    if path.stat().st_size == 0:
        raise ImageError(f"image file {path} is empty (0 bytes); re-export or re-download it")
    try:
        with _truncated_images_refused():
            image = Image.open(path)
            image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read; convert it to PNG or JPEG") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path} is too large to decode safely ({exc}); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image file {path} is truncated or corrupt ({exc}); re-export or re-download it") from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"image {path} has zero size ({image.width}x{image.height})")
    return image


def check_image(path: str | os.PathLike) -> None:
    """Fail now, naming the file, if `path` is not a whole image Pillow can decode (before any network loads)."""
    _open_fully(Path(path))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparent pixels are composited on white (the usual page background)."""
    if image.mode in _FULL_SCALE:
        scaled = np.asarray(image, dtype=np.float64) * (255.0 / _FULL_SCALE[image.mode])
        image = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def _centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square, as the StyleGAN2-ADA projector crops its targets."""
    side = min(image.size)
    left = (image.width - side) // 2
    top = (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def read_image(path: str | os.PathLike, resolution: int) -> torch.Tensor:
    """Read any image file as a [1, 3, R, R] float32 tensor in [-1, 1]: EXIF-upright, centre-cropped, Lanczos-resized.

    Alpha is composited on white; grayscale, 16-bit, CMYK and palette images become RGB.
    Warns when the source square is under half the resolution, since upscaling that far blurs the target.
    """
    path = Path(path)
    image = _centre_square(open_rgb(path))
    if image.width * _MAX_UPSCALE < resolution:
        warnings.warn(
            f"{path}: the centre square is {image.width} px but the generator works at {resolution} px; "
            f"upscaling it that far gives a blurry target, use a larger image if you have one",
            category=SgsimNotice, stacklevel=2,
        )
    if image.width != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return to_tensor(image)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Read any image file as an upright (EXIF-rotated) 8-bit RGB Pillow image; errors name the file."""
    return _to_rgb(ImageOps.exif_transpose(_open_fully(Path(path))))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a [1, 3, H, W] float32 tensor in [-1, 1]."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    return (pixels.permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0).contiguous()
