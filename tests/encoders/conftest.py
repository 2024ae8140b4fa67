"""Checks shared by the encoders' parity tests against golden embeddings made with each author's own code."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile
import torch
from tolerances import assert_embedding_close, relative_l2

from sgsim.audio import load_audio, load_centred_window

# The 20 s clip of the whole-clip goldens: these two real clips one after the other (tests/data/encoders/README.md).
TWENTY_SECOND_PARTS = ("audio/raining.wav", "audio/wind.wav")


def matches_golden(embedding: np.ndarray, reference: np.ndarray, tolerance: float) -> None:
    """One clip's embedding equals the reference run's up to relative L2 error `tolerance` (tolerances.py)."""
    assert_embedding_close(embedding, reference, tolerance)


def goldens_tell_clips_apart(embeddings: np.ndarray, tolerance: float) -> None:
    """Different clips' golden embeddings differ by far more than `tolerance`, so the parity tolerance means something."""
    pairwise = [relative_l2(embeddings[i], embeddings[j]) for i in range(len(embeddings)) for j in range(len(embeddings)) if i != j]
    assert min(pairwise) > 50 * tolerance


@pytest.fixture(scope="session")
def assert_matches_golden() -> Callable[[np.ndarray, np.ndarray, float], None]:
    """matches_golden, for the parity tests."""
    return matches_golden


@pytest.fixture(scope="session")
def assert_goldens_tell_clips_apart() -> Callable[[np.ndarray, float], None]:
    """goldens_tell_clips_apart, for the parity tests."""
    return goldens_tell_clips_apart


@pytest.fixture(scope="session")
def twenty_second_file(shared_data, tmp_path_factory) -> Callable[[int, bool], Path]:
    """make(rate, mono): raining.wav then wind.wav, each decoded by sgsim.audio.load_audio at `rate` (channels kept
    unless `mono`), written as 32-bit float, so reading the file back gives exactly the samples the goldens saw."""
    folder = tmp_path_factory.mktemp("twenty_seconds")

    def make(rate: int, mono: bool) -> Path:
        parts = [load_audio(shared_data / part, rate, mono)[0] for part in TWENTY_SECOND_PARTS]
        path = folder / f"raining+wind-{rate}-{'mono' if mono else 'channels'}.wav"
        soundfile.write(path, np.concatenate(parts, axis=-1).T, rate, subtype="FLOAT")
        return path

    return make


@torch.no_grad()
def embed_file_as_sgsim_does(encoder, path: Path) -> np.ndarray:
    """The unnormalised embedding of a file read the way every sgsim caller reads one for `encoder`."""
    waveform = load_centred_window(path, encoder.sample_rate, encoder.mono, encoder.input_seconds)
    return encoder(torch.from_numpy(waveform)[None])[0].numpy()


@pytest.fixture(scope="session")
def embed_file() -> Callable[..., np.ndarray]:
    """embed_file_as_sgsim_does, for the whole-clip golden tests."""
    return embed_file_as_sgsim_does
