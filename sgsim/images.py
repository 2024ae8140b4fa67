"""The one image reader and writer: any user image in as a generator-sized tensor, PNGs and grids out."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFile, ImageOps, UnidentifiedImageError

from sgsim.atomic import atomic_output
from sgsim.errors import ImageError

# Full-scale value of the single-channel modes that are not 8-bit. Pillow opens 16-bit PNGs as
# 'I' or 'I;16*', so 'I' is read on the 16-bit scale; float images ('F') on [0, 1].
_FULL_SCALE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}

# Upscaling a source side by more than this factor is worth a warning: the result will look soft.
_MAX_UPSCALE = 2.0

_LABEL_HEIGHT = 20


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
    image = _centre_square(_to_rgb(ImageOps.exif_transpose(_open_fully(path))))
    if image.width * _MAX_UPSCALE < resolution:
        warnings.warn(
            f"{path}: the centre square is {image.width} px but the generator works at {resolution} px; "
            f"upscaling it that far gives a blurry target, use a larger image if you have one",
            stacklevel=2,
        )
    if image.width != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    return (pixels.permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0).contiguous()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] (or [3, H, W]) in [-1, 1] to [N, H, W, 3] uint8, rounding as NVIDIA does (x * 127.5 + 128, clamped)."""
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ImageError(f"expected images shaped [N, 3, H, W], got {list(images.shape)}")
    pixels = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def _save_png(path: str | os.PathLike, image: Image.Image) -> None:
    """Write a Pillow image as PNG atomically."""
    with atomic_output(path) as stream:
        image.save(stream, format="PNG")


def write_png(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write one [1, 3, H, W] or [3, H, W] image in [-1, 1] as an 8-bit RGB PNG, atomically."""
    pixels = to_uint8(image)
    if pixels.shape[0] != 1:
        raise ImageError(f"write_png writes one image, got a batch of {pixels.shape[0]} for {path}; use write_grid")
    _save_png(path, Image.fromarray(pixels[0]))


def write_grid(path: str | os.PathLike, images: Sequence[torch.Tensor], labels: Sequence[str]) -> None:
    """Write images side by side, each under its label (e.g. source | inverted | edited), as one PNG, atomically."""
    if len(images) == 0 or len(images) != len(labels):
        raise ImageError(f"write_grid needs one label per image, got {len(images)} images and {len(labels)} labels")
    tiles = [to_uint8(image)[0] for image in images]
    height = max(tile.shape[0] for tile in tiles)
    canvas = Image.new("RGB", (sum(tile.shape[1] for tile in tiles), height + _LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    left = 0
    for tile, label in zip(tiles, labels):
        canvas.paste(Image.fromarray(tile), (left, _LABEL_HEIGHT))
        draw.text((left + 4, 4), label, fill=(0, 0, 0))
        left += tile.shape[1]
    _save_png(path, canvas)
