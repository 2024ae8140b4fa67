"""A small synthetic sound-class dataset and a tiny CLIP with open_clip's own random init, for CPU-sized training runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

RATE = 44100
SAMPLES = 22016  # 43 hops of 512: exactly the 44 frames of SMALL_FRONT_END
# A small network input (32 mel rows x 64 columns) so a ResNet18 trains in seconds on a CPU.
SMALL_FRONT_END = {"n_mels": 32, "frames": 44, "image_rows": 64}
# Classes that differ audibly, each with a label the tiny CLIP's text tower reads.
LABELS = ["dog", "siren", "rain", "clock ticking"]


def synthetic_sound(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A low tone, a high tone, low-passed noise or a click train, with random pitch, rate and level."""
    t = np.arange(SAMPLES) / RATE
    if kind == 0:
        wave = np.sin(2 * np.pi * rng.uniform(200, 300) * t)
    elif kind == 1:
        wave = np.sin(2 * np.pi * rng.uniform(5000, 6000) * t)
    elif kind == 2:
        wave = np.convolve(rng.standard_normal(SAMPLES), np.ones(32) / 32, "same")
    else:
        wave = np.zeros(SAMPLES)
        wave[:: int(RATE / rng.uniform(15, 25))] = 1.0
    return (0.5 * rng.uniform(0.3, 1.0) * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="session")
def sound_classes(tmp_path_factory) -> Path:
    """A CSV dataset (path,label,fold): 6 clips per class in fold 1 for training, 4 per class in fold 2 for validation."""
    root = tmp_path_factory.mktemp("sound_classes")
    rng = np.random.default_rng(0)
    rows = ["path,label,fold"]
    for fold, count in ((1, 6), (2, 4)):
        for kind, label in enumerate(LABELS):
            for number in range(count):
                name = f"f{fold}_{kind}_{number}.wav"
                soundfile.write(root / name, synthetic_sound(kind, rng), RATE)
                rows.append(f"{name},{label},{fold}")
    (root / "sounds.csv").write_text("\n".join(rows) + "\n")
    return root / "sounds.csv"


@pytest.fixture(scope="session")
def train_clip_file(tiny_clip_saver) -> Path:
    """The tiny CLIP the training tests start from (seed 0)."""
    return tiny_clip_saver(0)


@pytest.fixture(scope="session")
def small_run(sound_classes, train_clip_file, tiny_clip_name):
    """What a CPU-sized training run needs: the datasets, the tiny CLIP and a TrainConfig factory (overrides as keywords)."""
    from types import SimpleNamespace

    from encoders import load_clip
    from sgsim.datasets import read_csv_dataset
    from sgsim.training.config import TrainConfig
    from sgsim.training.trainer import train_val_split

    train, val = train_val_split(read_csv_dataset(sound_classes), val_fold=2)

    def config(**overrides) -> TrainConfig:
        settings = dict(epochs=8, batch_size=8, lr=0.05, lr_min=0.005, workers=0, checkpoint_every=1000, front_end=SMALL_FRONT_END)
        return TrainConfig(**{**settings, **overrides})

    return SimpleNamespace(train=train, val=val, clip=load_clip(tiny_clip_name, pretrained=train_clip_file), config=config,
                           clip_name=tiny_clip_name, clip_file=train_clip_file, csv=sound_classes, labels=LABELS, front_end=SMALL_FRONT_END)
