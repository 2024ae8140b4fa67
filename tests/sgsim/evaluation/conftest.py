"""Synthetic datasets in official layouts, written by the tests: an UrbanSound8K folder with mixed rates and channels;
and two torchrun ranks simulated in one process."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import soundfile

US8K_CLASSES = ["air_conditioner", "car_horn", "children_playing", "dog_bark"]
# (fold, classID, rate, channels, subtype): the mixed formats of UrbanSound8K's slices.
US8K_SLICES = [
    (1, 0, 44100, 2, "PCM_16"),
    (1, 1, 22050, 1, "PCM_24"),
    (2, 2, 48000, 2, "FLOAT"),
    (2, 3, 11025, 1, "PCM_U8"),
    (3, 0, 96000, 1, "PCM_16"),
    (3, 3, 16000, 2, "PCM_16"),
]


def write_tone(path: Path, rate: int, channels: int, subtype: str, frequency: float, seconds: float = 0.5) -> Path:
    """A sine tone at half full scale, the same on every channel."""
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * frequency * t)
    soundfile.write(path, np.stack([tone] * channels, axis=1), rate, subtype=subtype)
    return path


def make_urbansound8k(root: Path, missing: set[str] = frozenset()) -> Path:
    """An UrbanSound8K-layout folder: the metadata CSV with the official columns and audio/fold{N}/ slices (tone 200 Hz x (classID + 1))."""
    (root / "metadata").mkdir(parents=True)
    rows = []
    for number, (fold, class_id, rate, channels, subtype) in enumerate(US8K_SLICES):
        name = f"{1000 + number}-{class_id}-0-0.wav"
        folder = root / "audio" / f"fold{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        if name not in missing:
            write_tone(folder / name, rate, channels, subtype, 200.0 * (class_id + 1))
        rows.append([name, 1000 + number, 0.0, 0.5, 1, fold, class_id, US8K_CLASSES[class_id]])
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def synthetic() -> SimpleNamespace:
    """The writers and the layout constants of the synthetic datasets."""
    return SimpleNamespace(us8k_classes=US8K_CLASSES, us8k_slices=US8K_SLICES, make_urbansound8k=make_urbansound8k, write_tone=write_tone)


@pytest.fixture
def as_two_ranks(monkeypatch) -> Callable:
    """run(compute) -> (rank 0's result, {rank: what it gathered}): compute() as rank 1 of 2 under torchrun, stopped at
    its gather_objects, then as rank 0, whose gather returns both shares. Two ranks in one process, no process group."""
    import sgsim.distributed
    from sgsim.distributed import Rank

    def run(compute: Callable[[], object]) -> tuple[object, dict[int, object]]:
        shares = {}

        def gather(value, rank: int):
            shares[rank] = value
            if rank == 1:
                raise StopIteration
            return [shares[0], shares[1]]

        monkeypatch.setattr(sgsim.distributed, "active", lambda: True)
        for rank in (1, 0):
            monkeypatch.setattr(sgsim.distributed, "current_rank", lambda rank=rank: Rank(rank, 2))
            monkeypatch.setattr(sgsim.distributed, "gather_objects", lambda value, rank=rank: gather(value, rank))
            try:
                result = compute()
            except StopIteration:
                continue
        return result, shares

    return run
