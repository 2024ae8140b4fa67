"""The shapes world's speech: a seeded plan, held-out voices, and a dataset in the layout sgsim's readers take."""

from __future__ import annotations

import shutil

import pytest

from sgsim.datasets import open_dataset
from sgsim.worlds.shapes import WORDS
from sgsim.worlds.speech import SCALES, plan, write_dataset

needs_engine = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_the_plan_is_seeded_and_holds_voices_out():
    first, again, other = plan(0, SCALES["full"]), plan(0, SCALES["full"]), plan(1, SCALES["full"])
    assert first == again and first != other
    train_voices = {u.voice for u in first["train"]}
    test_voices = {u.voice for u in first["test"]}
    assert not train_voices & test_voices
    assert {u.text for u in first["test"]} == set(WORDS)
    assert len(test_voices) == SCALES["full"].test_voices


@needs_engine
def test_the_dataset_reads_as_a_csv_dataset_with_every_word(tmp_path):
    from sgsim.audio import load_audio

    summary = write_dataset(tmp_path, seed=0, scale=SCALES["toy"])
    train, test = open_dataset(tmp_path / "train.csv"), open_dataset(tmp_path / "test.csv")
    assert sorted(test.classes) == sorted(WORDS) and not test.problems and not train.problems
    assert len(train.folds) > 1  # train-encoder validates on a fold of voices it does not train on
    waveform, rate = load_audio(test.clips[0].path, 44100, mono=True)
    assert rate == 44100 and 0.3 < len(waveform) / rate < 3 and abs(waveform).max() > 0.1
    words = [span["word"] for span in summary["sequence"]]
    assert words == ["red", "blue", "green"] and (tmp_path / "sequence.wav").is_file()
    before = (tmp_path / "train.csv").read_bytes()
    write_dataset(tmp_path, seed=0, scale=SCALES["toy"])  # resumed: the same files, nothing re-synthesised differently
    assert (tmp_path / "train.csv").read_bytes() == before
