"""What the demo accepts from a browser: files inside its upload folder only, within size, length and pixel limits.

Every check raises an SgsimError whose message names the file as the visitor called it, never the server's path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sgsim.errors import AudioError, ImageError, SgsimError

MB = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """The largest upload the demo takes, and how long an edit a visitor may ask for."""

    max_file_mb: float = 20.0  # any one file; the server also refuses larger uploads at the door
    max_sound_seconds: float = 60.0  # the encoders' decoding cap (AudioEncoder.input_seconds): a sound is heard whole
    max_image_pixels: int = 4096 * 4096  # width x height of a photo to invert
    max_steps: int = 1000  # optimisation steps of one edit
    max_invert_steps: int = 1000  # inversion steps of a photo source
    max_video_steps: int = 200  # optimisation steps of a video's keyframes (all optimised in one batch)
    max_fps: int = 12  # frames per second of a video
    max_keyframes: int = 32  # keyframes of one video: the batch the optimisation holds on the device at once
    max_text_chars: int = 1000  # the text mixed with the sound (CLIP reads its first 77 tokens)
    max_latent_unpacked_mb: float = 64.0  # a latent file's arrays unpacked (a 1024 px edit's with noise: a few MB)


def uploaded_file(path: str | os.PathLike, folder: Path) -> Path:
    """`path` resolved, if it is a file inside the upload folder; anything else a client names is refused unopened."""
    try:
        resolved = Path(path).resolve()
        inside, exists = resolved.is_relative_to(folder.resolve()), resolved.is_file()
    except (OSError, ValueError):  # a NUL byte or an over-long name: no file the page uploaded
        inside, exists = True, False
    if not inside:
        raise SgsimError(f"refused {Path(path).name!r}: only files uploaded through this page are read")
    if not exists:
        raise SgsimError(f"{Path(path).name!r:.80} is not an uploaded file; upload it again")
    return resolved


def check_size(path: Path, limits: UploadLimits, name: str) -> None:
    """Refuse an empty file or one over the size limit."""
    size = path.stat().st_size
    if size == 0:
        raise SgsimError(f"{name} is empty (0 bytes); upload the file again")
    if size > limits.max_file_mb * MB:
        raise SgsimError(f"{name} is {size / MB:.1f} MB, over the demo's {limits.max_file_mb:g} MB limit; upload a smaller file")


def check_sound(path: Path, limits: UploadLimits, name: str) -> None:
    """Refuse a sound that is too large or long, cannot be decoded, or is silent; reads at most the limit's length."""
    from sgsim.audio import audio_duration, check_not_silent, load_audio

    check_size(path, limits, name)
    seconds = audio_duration(path)
    if seconds > limits.max_sound_seconds:
        raise AudioError(f"{name} lasts {seconds:.0f} s, over the demo's {limits.max_sound_seconds:g} s limit; trim it")
    waveform, _ = load_audio(path)
    check_not_silent(waveform, name)


def check_keyframes(path: Path, limits: UploadLimits, name: str, keyframe_every: float) -> None:
    """Refuse a video whose sound, at this keyframe spacing, needs more keyframes than the limit."""
    from sgsim.audio import audio_duration
    from sgsim.editing.video import keyframe_times

    seconds = audio_duration(path)
    count = len(keyframe_times(seconds, keyframe_every))
    if count > limits.max_keyframes:
        raise SgsimError(f"{name} lasts {seconds:.1f} s: keyframes every {keyframe_every:g} s make {count}, over the "
                         f"demo's {limits.max_keyframes}; space them further apart or trim the sound")


def check_latent(path: Path, limits: UploadLimits, name: str) -> None:
    """Refuse a latent file too large in bytes, or whose arrays unpack past the limit (a zip bomb), inflating nothing."""
    from sgsim.latents import unpacked_bytes

    check_size(path, limits, name)
    unpacked = unpacked_bytes(path)
    if unpacked > limits.max_latent_unpacked_mb * MB:
        raise SgsimError(f"{name} unpacks to {unpacked / MB:.0f} MB, over the demo's {limits.max_latent_unpacked_mb:g} MB "
                         f"for a latent file; upload latent.npz from sgsim")


def check_image(path: Path, limits: UploadLimits, name: str) -> None:
    """Refuse a photo that is too large in bytes or pixels, reading only its header (sgsim.images decodes it later)."""
    from PIL import Image, UnidentifiedImageError

    check_size(path, limits, name)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise ImageError(f"{name} claims more pixels than the demo's limit of {limits.max_image_pixels:,}; downscale it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageError(f"{name} is not an image the demo can read; upload a PNG or JPEG") from None
    if width * height > limits.max_image_pixels:
        raise ImageError(f"{name} is {width}x{height} pixels, over the demo's limit of {limits.max_image_pixels:,} pixels; "
                         f"downscale it")


def public_message(error: Exception | str, path: Path, name: str) -> str:
    """The error's message with the server-side path replaced by the name the visitor gave the file."""
    return str(error).replace(str(path), name)
