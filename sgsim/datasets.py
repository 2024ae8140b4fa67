"""Labelled audio datasets in their official layouts, read unchanged: ESC-50, UrbanSound8K, VGGSound, a CSV, class folders.

A reader lists clips (path, class, fold, optional video frame) and never decodes audio; a clip whose file
is missing is reported as a `Problem` (path and reason) and left out, so one bad file never stops a run.
Files that exist but cannot be decoded are reported the same way by whoever decodes them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sgsim.errors import SgsimError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class DatasetError(SgsimError):
    """A dataset folder or its metadata cannot be read."""


@dataclass(frozen=True)
class Clip:
    """One labelled sound: where it is, its class, its official fold and, when the dataset has one, a video frame."""

    path: Path
    label: str  # class name as the dataset spells it (ESC-50: "dog", "crackling_fire")
    fold: int | None = None  # official fold; None when the dataset has no folds
    image: Path | None = None  # a frame of the clip's video (VGGSound-style training), if any
    split: str | None = None  # "train" / "test" where the dataset names its split (VGGSound)


@dataclass(frozen=True)
class Problem:
    """A clip left out of a run, and why."""

    path: str
    reason: str


@dataclass
class AudioDataset:
    """The clips of one dataset, its class list in a fixed order and the clips it had to leave out."""

    name: str
    root: Path
    classes: list[str]
    clips: list[Clip]
    problems: list[Problem] = field(default_factory=list)

    @property
    def folds(self) -> list[int]:
        """The official folds that hold at least one clip, ascending (ESC-50 subsets may lack some)."""
        return sorted({clip.fold for clip in self.clips if clip.fold is not None})

    def class_index(self, label: str) -> int:
        """Position of `label` in `classes`."""
        return self.classes.index(label)


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a headed CSV file, after checking that it names every required column."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such metadata file; point at the dataset's root folder as downloaded")
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path} lacks the column(s) {', '.join(missing)} (it has {', '.join(reader.fieldnames or [])})")
        return list(reader)


def _integer(value: str, column: str, source: Path, row: int) -> int:
    """A metadata cell that must be an integer, or an error naming the file, row and column."""
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{source} row {row}: column {column} should be an integer, got {value!r}") from None


def not_a_clip(path: Path) -> str | None:
    """Why `path` cannot be a clip, or None for a regular file (or a link to one).

    Only regular files are read: a FIFO named x.wav would block the first read forever, and a directory
    or a symlink loop would fail it.
    """
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return "broken or looping symbolic link"
    return "not a regular file (a folder, pipe or device)" if path.exists() else "file not found"


def _keep_present(name: str, root: Path, classes: list[str], clips: list[Clip], problems: list[Problem] | None = None) -> AudioDataset:
    """A dataset of the clips whose files are regular files; the others become problems."""
    present, problems = [], list(problems or [])
    for clip in clips:
        reason = not_a_clip(clip.path)
        if reason is None:
            present.append(clip)
        else:
            problems.append(Problem(str(clip.path), reason))
    return AudioDataset(name, root, classes, present, problems)


def _ordered_classes(pairs: dict[int, str] | list[str]) -> list[str]:
    """Class names ordered by their official target id, or alphabetically when there is none."""
    if isinstance(pairs, dict):
        return [pairs[target] for target in sorted(pairs)]
    return sorted(set(pairs))


def read_esc50(root: str | Path) -> AudioDataset:
    """ESC-50 as downloaded: `meta/esc50.csv` (filename, fold, target, category, ...) and `audio/`."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    rows = _read_rows(meta, ("filename", "fold", "target", "category"))
    targets, clips = {}, []
    for number, row in enumerate(rows, start=2):
        targets[_integer(row["target"], "target", meta, number)] = row["category"]
        clips.append(Clip(root / "audio" / row["filename"], row["category"], _integer(row["fold"], "fold", meta, number)))
    return _keep_present("esc50", root, _ordered_classes(targets), clips)


def read_urbansound8k(root: str | Path) -> AudioDataset:
    """UrbanSound8K as downloaded: `metadata/UrbanSound8K.csv` and `audio/fold1..fold10/` (mixed rates and channels)."""
    root = Path(root)
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_rows(meta, ("slice_file_name", "fold", "classID", "class"))
    targets, clips = {}, []
    for number, row in enumerate(rows, start=2):
        fold = _integer(row["fold"], "fold", meta, number)
        targets[_integer(row["classID"], "classID", meta, number)] = row["class"]
        clips.append(Clip(root / "audio" / f"fold{fold}" / row["slice_file_name"], row["class"], fold))
    return _keep_present("urbansound8k", root, _ordered_classes(targets), clips)


def read_csv_dataset(path: str | Path) -> AudioDataset:
    """A headed CSV with columns `path`, `label` and optionally `fold`, `image`; relative paths are from the CSV's folder."""
    path = Path(path)
    rows = _read_rows(path, ("path", "label"))
    clips = []
    for number, row in enumerate(rows, start=2):
        fold = _integer(row["fold"], "fold", path, number) if row.get("fold") else None
        image = path.parent / row["image"] if row.get("image") else None
        clips.append(Clip(path.parent / row["path"], row["label"], fold, image))
    return _keep_present(path.stem, path.parent, _ordered_classes([clip.label for clip in clips]), clips)


def read_class_folders(root: str | Path) -> AudioDataset:
    """One sub-folder per class holding its audio files (`root/dog/*.wav`); no folds."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; pass a folder with one sub-folder of audio files per class")
    named = [
        Clip(file, folder.name)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for file in sorted(folder.iterdir())
        if file.suffix.lower() in AUDIO_SUFFIXES
    ]
    dataset = _keep_present(root.name, root, [], named)
    if not dataset.clips:
        raise DatasetError(f"{root} holds no class sub-folders with audio files ({', '.join(AUDIO_SUFFIXES)})")
    dataset.classes = _ordered_classes([clip.label for clip in dataset.clips])
    return dataset


def read_vggsound(csv_path: str | Path, audio_dir: str | Path | None = None, frame_dir: str | Path | None = None) -> AudioDataset:
    """VGGSound's `vggsound.csv` (no header: YouTube id, start second, label, train/test) over extracted clips.

    Clip files are `{audio_dir}/{id}_{start:06d}.<audio suffix>` (the naming of the official release);
    a frame `{frame_dir}/{id}_{start:06d}.<image suffix>` is attached when `frame_dir` is given and it exists.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: no such file; pass VGGSound's vggsound.csv")
    audio_dir = Path(audio_dir) if audio_dir else csv_path.parent / "audio"
    audio_files = _stems(audio_dir, AUDIO_SUFFIXES)
    frames = _stems(Path(frame_dir), IMAGE_SUFFIXES) if frame_dir else {}
    clips, problems = [], []
    with open(csv_path, newline="", encoding="utf-8") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if len(row) != 4:
                raise DatasetError(f"{csv_path} row {number}: expected 4 columns (id, start, label, split), got {len(row)}")
            stem = f"{row[0]}_{_integer(row[1], 'start', csv_path, number):06d}"
            if stem not in audio_files:
                problems.append(Problem(str(audio_dir / stem), "file not found"))
                continue
            clips.append(Clip(audio_files[stem], row[2], None, frames.get(stem), row[3].strip()))
    classes = _ordered_classes([clip.label for clip in clips])
    return AudioDataset("vggsound", csv_path.parent, classes, clips, problems)


def _stems(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files of `folder` with one of `suffixes`, by name without suffix."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    return {file.stem: file for file in folder.iterdir() if file.suffix.lower() in suffixes and not_a_clip(file) is None}


# Layouts recognised by the files at a dataset's root, tried in order.
LAYOUTS: dict[str, tuple[str, Callable[[Path], AudioDataset]]] = {
    "esc50": ("meta/esc50.csv", read_esc50),
    "urbansound8k": ("metadata/UrbanSound8K.csv", read_urbansound8k),
}


def open_dataset(location: str | Path) -> AudioDataset:
    """Read a dataset by what is there: an ESC-50 or UrbanSound8K root, a CSV file, or a folder of class folders."""
    location = Path(location)
    if location.is_file() and location.suffix.lower() == ".csv":
        return read_csv_dataset(location)
    if not location.is_dir():
        raise DatasetError(f"{location}: no such dataset; pass an ESC-50 or UrbanSound8K root, a CSV (path,label) or a folder of class folders")
    for marker, reader in LAYOUTS.values():
        if (location / marker).is_file():
            return reader(location)
    return read_class_folders(location)
