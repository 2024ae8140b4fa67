"""The edited images in sgsim's output folders, as the measuring commands (`evaluate`, `study`) read them: a folder
holding source.png beside <target>_s<strength>.png (edit, a batch job, an apply source) and the run record that
made it (the folder's own, or for apply its parent's). Torch-free."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sgsim.outputs import read_run_record

MAX_SCAN_DEPTH = 3  # an apply run keeps its edits one folder down, a batch's jobs another
EDITED = re.compile(r"(?P<target>.+)_s(?P<strength>[-+0-9.eE]+)\.png")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
MAX_AUDIO_BYTES = 50 << 20  # a sound a record names is read (or copied) only up to this size
MAX_PATH_CHARS = 4096  # a recorded path longer than any file system allows is no path


@dataclass(frozen=True)
class EditedImage:
    target: str  # the target's file stem, e.g. 'raining' (a repeated stem gets -2, -3, ...)
    strength: str  # as written in the file name, e.g. '1' or '0.5'
    path: Path


@dataclass(frozen=True)
class EditFolder:
    """One folder of edits of one source, and the run record that wrote it."""

    folder: Path
    record: dict  # the run.json that made it (sgsim's), read as data
    record_folder: Path  # where that run.json is: the folder itself, or an apply run's folder above it
    source: Path  # source.png: the generator's image of the source latent
    photo: Optional[Path]  # input.png: the photo, for an image source
    images: tuple[EditedImage, ...]

    @property
    def source_key(self) -> str:
        """sha256 of the photo (input.png) or source image: the same seed or photo gives the same key in any run."""
        return hashlib.sha256((self.photo or self.source).read_bytes()).hexdigest()

    @property
    def command(self) -> str:
        return str(self.record.get("command", ""))

    def sounds(self) -> dict[str, Path]:
        """The readable sound files the record names as targets (or as learned directions' sounds), by file stem."""
        named = [t.get("audio") for t in _dicts(self.record.get("targets"))]
        named += [d.get("sound") for d in _dicts(self.record.get("directions"))]
        found: dict[str, Path] = {}
        for text in named:
            path = recorded_path(text)
            if path is not None and path.suffix.lower() in AUDIO_SUFFIXES and path.stat().st_size <= MAX_AUDIO_BYTES:
                found.setdefault(path.stem, path)
        return found

    def sound_for(self, target: str) -> Optional[Path]:
        """The sound of an image's target stem (a '-2' suffix made for a repeated stem is dropped)."""
        sounds = self.sounds()
        return sounds.get(target) or sounds.get(re.sub(r"-\d+$", "", target))


def _dicts(value: object) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def recorded_path(value: object) -> Optional[Path]:
    """A regular file a record names, or None: a record is data, so anything else it says is ignored."""
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\x00" in value:
        return None
    path = Path(value)
    try:
        return path if path.is_file() else None
    except OSError:  # a name too long for the file system
        return None


def edit_folder(folder: Path) -> Optional[EditFolder]:
    """The edits in `folder`, or None when it holds no source.png with edited images beside it and a run record."""
    source = folder / "source.png"
    if folder.is_symlink() or not folder.is_dir() or not source.is_file():
        return None
    images = tuple(EditedImage(m["target"], m["strength"], path) for path in sorted(folder.glob("*_s*.png"))
                   if path.is_file() and (m := EDITED.fullmatch(path.name)))
    for record_folder in (folder, folder.parent):
        record = read_run_record(record_folder)
        if record is not None and images:
            photo = folder / "input.png"
            return EditFolder(folder, record, record_folder, source, photo if photo.is_file() else None, images)
    return None


def find_edit_folders(root: Path) -> list[EditFolder]:
    """Every folder of edits at `root` or up to MAX_SCAN_DEPTH folders below it, in path order."""
    candidates = [root, *(p for depth in range(1, MAX_SCAN_DEPTH + 1) for p in sorted(root.glob("/".join(["*"] * depth))))]
    return [found for folder in candidates if (found := edit_folder(folder)) is not None]
