"""Every file a command writes: images (PNG, labelled grid), optimisation videos (GIF, MP4), arrays (NPZ),
reports (JSON) and the run record. Each writer is atomic: a reader sees the old file or the whole new one."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from sgsim import __version__
from sgsim.atomic import atomic_output
from sgsim.errors import ImageError, SgsimError
from sgsim.settings import VIDEO_FORMATS  # noqa: F401  (what --save-video writes; declared with the edit settings)

if TYPE_CHECKING:
    import torch

# Packages whose versions decide the numbers of a run; recorded in run.json.
RECORDED_PACKAGES = ("sgsim", "torch", "torchvision", "torchaudio", "open_clip_torch", "numpy", "librosa", "soundfile", "pillow")
RUN_RECORD = "run.json"
GIF_FRAME_MS = 80
TILE_PX = 256  # side of a comparison tile: 1024 px images shrink to it, 32 px test images grow to 128
MIN_FONT_PX = 13  # smallest label size that stays readable on a screen
LABEL_BAND = 1.6  # a label band's height in font sizes
LABEL_PAD = 4  # pixels between a label and its tile's edge
TITLE_FILL = (228, 232, 240)  # background of a row's title band, so rows read apart
VIDEO_FPS = 12.0  # optimisation video frame rate
MP4_CODEC = "libx264"  # H.264 in yuv420p: what every browser and phone plays
MP4_AUDIO_CODEC = "aac"
MP4_AUDIO_RATE = 48000
OUT_ROOT = Path("out")  # where default output folders go


def safe_stem(text: str, fallback: str, limit: int = 40) -> str:
    """A file-name-safe stem of a name or a text ('a snowy mountain' -> 'a_snowy_mountain')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or fallback


def unique(names: Iterable[str], separator: str = "-") -> list[str]:
    """Names made unique in order: a repeat gets -2, -3, ... (so no file or report key hides another)."""
    seen: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}{separator}{n}"
        seen.append(candidate)
    return seen


def fresh_folder(name: str, root: Path = OUT_ROOT) -> Path:
    """root/name, or root/name-2, -3, ... : the first that does not exist yet, so runs never overwrite each other."""
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


def file_stems(paths: Iterable[Path]) -> list[str]:
    """A file-name-safe, unique stem per sound (a repeated stem gets -2, -3, ...)."""
    return unique(safe_stem(path.stem, "sound") for path in paths)


def to_uint8(images: "torch.Tensor") -> np.ndarray:
    """[N, 3, H, W] (or [3, H, W]) in [-1, 1] to [N, H, W, 3] uint8, rounding as NVIDIA does (x * 127.5 + 128, clamped)."""
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ImageError(f"expected images shaped [N, 3, H, W], got {list(images.shape)}")
    import torch

    pixels = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def _save_png(path: Union[str, os.PathLike], image) -> None:
    """Write a Pillow image as PNG atomically."""
    with atomic_output(path) as stream:
        image.save(stream, format="PNG")


def write_png(path: Union[str, os.PathLike], image: "torch.Tensor") -> None:
    """Write one [1, 3, H, W] or [3, H, W] image in [-1, 1] as an 8-bit RGB PNG, atomically."""
    from PIL import Image

    pixels = to_uint8(image)
    if pixels.shape[0] != 1:
        raise ImageError(f"write_png writes one image, got a batch of {pixels.shape[0]} for {path}; use write_grid_rows")
    _save_png(path, Image.fromarray(pixels[0]))


@dataclass
class GridRow:
    """One row of a labelled grid: an optional title across the row, then tiles each under its caption."""

    tiles: Sequence["torch.Tensor"]  # [1, 3, H, W] or [3, H, W] in [-1, 1]
    captions: Sequence[str]
    title: Optional[str] = None


def label_font(size: int):
    """DejaVu Sans (shipped inside matplotlib, a dependency) at `size` pixels: readable at any tile size, unlike
    PIL's 10 px bitmap default, which stays the fallback when the file is absent."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def font_size_for(tile: int) -> int:
    """Label size in pixels for tiles `tile` pixels wide: about 1/16 of the tile, never below MIN_FONT_PX."""
    return max(MIN_FONT_PX, tile // 16)


def fit_text(draw, text: str, font, width: int) -> str:
    """`text` cut with an ellipsis so that it fits `width` pixels in `font` (whole when it fits)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def tile_size(height: int, target: int = TILE_PX) -> int:
    """The side a [height x height] image gets in a comparison: large images shrink to `target`, small ones grow by a
    whole factor (nearest neighbour, so pixels stay pixels) to at least half of it."""
    if height > target:
        return target
    return height * max(1, -(-target // 2 // height))


def grid_picture(rows: Sequence[GridRow], tile: Optional[int] = None):
    """Rows of tiles as one Pillow picture: each row's title band across it, each tile's caption band above it.
    `tile`: the side every tile is scaled to (None: as given). Labels are DejaVu Sans sized with the tiles."""
    from PIL import Image, ImageDraw

    if not rows or any(len(row.tiles) == 0 or len(row.tiles) != len(row.captions) for row in rows):
        raise ImageError(f"a grid needs rows with one caption per tile, got {[(len(r.tiles), len(r.captions)) for r in rows]}")
    pictures = [[Image.fromarray(to_uint8(image)[0]) for image in row.tiles] for row in rows]
    if tile is not None:
        pictures = [[_scaled(picture, tile) for picture in row] for row in pictures]
    cell_w = max(picture.width for row in pictures for picture in row)
    cell_h = max(picture.height for row in pictures for picture in row)
    font = label_font(font_size_for(cell_w))
    band = round(font.size * LABEL_BAND)
    columns = max(len(row) for row in pictures)
    heights = [(band if row.title else 0) + band + cell_h for row in rows]
    canvas = Image.new("RGB", (columns * cell_w, sum(heights)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    top = 0
    for row, row_pictures, height in zip(rows, pictures, heights):
        if row.title:
            draw.rectangle((0, top, canvas.width, top + band - 1), fill=TITLE_FILL)
            draw.text((LABEL_PAD, top + band // 2), fit_text(draw, row.title, font, canvas.width - 2 * LABEL_PAD),
                      fill=(0, 0, 0), font=font, anchor="lm")
            top += band
        for c, (picture, caption) in enumerate(zip(row_pictures, row.captions)):
            left = c * cell_w
            draw.text((left + LABEL_PAD, top + band // 2), fit_text(draw, caption, font, cell_w - 2 * LABEL_PAD),
                      fill=(0, 0, 0), font=font, anchor="lm")
            canvas.paste(picture, (left, top + band))
        top = top + band + cell_h
    return canvas


def _scaled(picture, side: int):
    """A square-ish tile scaled so its height is `side`: Lanczos when shrinking, nearest neighbour when growing."""
    from PIL import Image

    if picture.height == side:
        return picture
    width = round(picture.width * side / picture.height)
    return picture.resize((width, side), Image.Resampling.NEAREST if side > picture.height else Image.Resampling.LANCZOS)


def write_grid_rows(path: Union[str, os.PathLike], rows: Sequence[GridRow], tile: Optional[int] = None) -> None:
    """Write a grid of titled rows (grid_picture) as one PNG, atomically."""
    _save_png(path, grid_picture(rows, tile))


def write_json(path: Union[str, os.PathLike], data: Mapping) -> None:
    """A JSON report, indented, atomically."""
    with atomic_output(path) as stream:
        stream.write((json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))


def write_text(path: Union[str, os.PathLike], text: str) -> None:
    """A text file (Markdown, HTML) in UTF-8, atomically."""
    with atomic_output(path) as stream:
        stream.write(text.encode("utf-8"))


def spreadsheet_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text, never runs: text starting with = + - @ or a tab/CR gets a leading
    apostrophe (OWASP's advice against formula injection); numbers pass unchanged."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(path: Union[str, os.PathLike], rows: Sequence[Mapping[str, object]], columns: Optional[Sequence[str]] = None) -> None:
    """Rows as CSV under a header (`columns`, else the first row's keys), every text cell spreadsheet-safe, atomically."""
    import csv
    import io

    buffer = io.StringIO()
    columns = list(columns) if columns is not None else list(rows[0]) if rows else []
    if columns:
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: spreadsheet_cell(value) for key, value in row.items()} for row in rows)
    write_text(path, buffer.getvalue())


def write_npz(path: Union[str, os.PathLike], **arrays: np.ndarray) -> None:
    """Arrays as an uncompressed .npz file, atomically."""
    with atomic_output(path) as stream:
        np.savez(stream, **arrays)


def side_by_side(frame: "torch.Tensor") -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] as one [H, N * W, 3] uint8 picture (one optimisation snapshot of N edits)."""
    return np.concatenate(list(to_uint8(frame)), axis=1)


def write_gif(path: Union[str, os.PathLike], frames: Iterable[Union[np.ndarray, "torch.Tensor"]], frame_ms: int = GIF_FRAME_MS) -> None:
    """Frames ([H, W, 3] uint8 pictures, or [N, 3, H, W] snapshots shown side by side) as a looping GIF, atomically."""
    from PIL import Image

    pictures = [Image.fromarray(frame if isinstance(frame, np.ndarray) else side_by_side(frame)) for frame in frames]
    if not pictures:
        raise SgsimError(f"no frames to write to {path}")
    with atomic_output(path) as stream:
        pictures[0].save(stream, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)


def _even(picture: np.ndarray) -> np.ndarray:
    """Pad a [H, W, 3] picture to even sides with black: yuv420p halves the chroma resolution."""
    height, width = picture.shape[:2]
    return np.pad(picture, ((0, height % 2), (0, width % 2), (0, 0))) if height % 2 or width % 2 else picture


def _audio_track(audio: Union[str, os.PathLike, tuple[np.ndarray, int]]) -> np.ndarray:
    """A sound file or (waveform, sample_rate) as mono float32 at MP4_AUDIO_RATE."""
    if isinstance(audio, tuple):
        import librosa

        waveform, rate = audio
        waveform = np.asarray(waveform, dtype=np.float32)
        waveform = waveform.mean(axis=0) if waveform.ndim == 2 else waveform
        if rate != MP4_AUDIO_RATE:
            waveform = librosa.resample(waveform, orig_sr=rate, target_sr=MP4_AUDIO_RATE, res_type="soxr_hq")
        return np.ascontiguousarray(waveform, dtype=np.float32)
    from sgsim.audio import load_audio

    return load_audio(audio, MP4_AUDIO_RATE, mono=True)[0]


def write_mp4(
    path: Union[str, os.PathLike],
    frames: Iterable[np.ndarray],  # [H, W, 3] uint8 pictures, or [N, 3, H, W] / [3, H, W] tensors in [-1, 1]
    fps: float,
    audio: Union[str, os.PathLike, tuple[np.ndarray, int], None] = None,  # a sound file or (waveform, rate) to mux as AAC
) -> int:
    """Encode frames as an H.264 (yuv420p) MP4 one at a time, never holding them all, with an optional AAC
    track; atomic. Every frame must have the first one's size. Returns the number of frames written."""
    import av

    if not (fps > 0 and np.isfinite(fps)):
        raise SgsimError(f"fps must be a finite number > 0, got {fps}")
    track = None if audio is None else _audio_track(audio)  # a bad sound fails before any encoding
    count = 0
    with atomic_output(path) as stream:
        with av.open(stream, mode="w", format="mp4") as container:
            video = audio_stream = None
            for frame in frames:
                picture = frame if isinstance(frame, np.ndarray) else side_by_side(frame if frame.dim() == 4 else frame[None])
                picture = _even(np.ascontiguousarray(picture, dtype=np.uint8))
                if video is None:
                    from fractions import Fraction

                    video = container.add_stream(MP4_CODEC, rate=Fraction(fps).limit_denominator(1000))
                    video.width, video.height, video.pix_fmt = picture.shape[1], picture.shape[0], "yuv420p"
                    if track is not None:
                        audio_stream = container.add_stream(MP4_AUDIO_CODEC, rate=MP4_AUDIO_RATE, layout="mono")
                elif picture.shape[:2] != (video.height, video.width):
                    raise SgsimError(f"frame {count} of {path} is {picture.shape[1]}x{picture.shape[0]}, "
                                     f"the video is {video.width}x{video.height}; every frame needs the same size")
                container.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
                count += 1
            if video is None:
                raise SgsimError(f"no frames to write to {path}")
            container.mux(video.encode())
            if audio_stream is not None:
                _mux_audio(container, audio_stream, track)
    return count


def _mux_audio(container, stream, waveform: np.ndarray) -> None:
    """Encode a mono float32 waveform into `stream` in the encoder's frame size."""
    import av

    step = stream.codec_context.frame_size or 1024
    for start in range(0, len(waveform), step):
        chunk = av.AudioFrame.from_ndarray(waveform[None, start:start + step], format="fltp", layout="mono")
        chunk.sample_rate = MP4_AUDIO_RATE
        chunk.pts = start
        container.mux(stream.encode(chunk))
    container.mux(stream.encode())


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a run's numbers, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def weights_record(files: Mapping[str, Path]) -> dict[str, dict[str, str]]:
    """Path and sha256 of every weights file a run loaded. A cached file's checksum is the one the cache checked
    at download or import (manifest or recorded, the size rechecked); only other files are hashed now."""
    import checkpoints
    from checkpoints.cache import cached_path, recorded_checksums
    from checkpoints.download import sha256_file

    known = {}
    recorded = recorded_checksums()
    for item in checkpoints.entries():
        expected = item.sha256 or recorded.get(item.name, {}).get("sha256")
        size = item.size or recorded.get(item.name, {}).get("size")
        if expected:
            known[cached_path(item).resolve()] = (expected, size, "manifest" if item.sha256 else "cache record")
    record = {}
    for component, path in files.items():
        path = Path(path)
        expected, size, origin = known.get(path.resolve(), (None, None, None))
        if expected is not None and (size is None or path.stat().st_size == size):
            record[component] = {"path": str(path), "sha256": expected, "sha256_from": origin}
        else:
            record[component] = {"path": str(path), "sha256": sha256_file(path), "sha256_from": "hashed"}
    return record


def run_record(command: str, argv: Optional[list[str]] = None, **fields) -> dict:
    """The head of every run.json: tool and version, command, the command line as typed, when, and the
    package versions; `fields` follow."""
    return {
        "sgsim": __version__,
        "command": command,
        "argv": list(sys.argv if argv is None else argv),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **fields,
    }


MAX_RECORD_BYTES = 64 << 20  # a run record read back: far above any run's (a 10000-job batch writes a few MB)


def read_record_file(path: Path) -> Optional[dict]:
    """A run record sgsim wrote (run.json, a video's or a direction's record) as data, or None when the file is
    missing, not sgsim's, not JSON, too large, or nested too deeply to read (a record read back is input like any other)."""
    try:
        if not Path(path).is_file() or Path(path).stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: lists nested thousands deep
        return None
    if isinstance(data, dict) and ("sgsim" in data or "sgsim" in (data.get("versions") or {})):
        return data
    return None


def read_run_record(folder: Path) -> Optional[dict]:
    """The run.json sgsim wrote in `folder` (read_record_file), or None."""
    return read_record_file(Path(folder) / RUN_RECORD)


def is_record_of(path: Path, command: str) -> bool:
    """True when `path` is a run record (run_record's head) that `sgsim <command>` wrote, which its rerun may replace."""
    data = read_record_file(path)
    return data is not None and data.get("command") == command


def is_run_folder(folder: Path) -> bool:
    """True when `folder` is an earlier output of an sgsim command (its run.json names sgsim), which a rerun may replace."""
    return read_run_record(folder) is not None


def edit_run_record(command: str, argv: Optional[list[str]], settings, resolved: Mapping, **fields) -> dict:
    """run.json of an edit (edit, batch, video, demo): run_record's head, the networks as named, and `settings` (an
    sgsim.settings.EditSettings, recorded whole by settings_record) with what the run `resolved` from them (the
    Editor's settings: loss weights over the preset, precision and why, loudness scales, ...) over them."""
    from sgsim.settings import settings_record

    recorded = settings_record(settings)
    return run_record(command, argv, generator=recorded["generator"], encoder=recorded["encoder"],
                      encoder_checkpoint=recorded["encoder_checkpoint"], clip=recorded["clip_weights"],
                      settings={**recorded, **resolved}, **fields)
