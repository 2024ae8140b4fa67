"""Dataset readers: the official ESC-50 and UrbanSound8K layouts read unchanged, the generic layouts, missing files reported."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from sgsim.audio import load_audio
from sgsim.datasets import DatasetError, open_dataset, read_class_folders, read_csv_dataset, read_esc50, read_urbansound8k, read_vggsound

def test_esc50_mini_reads_unchanged(shared_data):
    dataset = open_dataset(shared_data / "esc50-mini")
    assert dataset.name == "esc50" and len(dataset.clips) == 10 and dataset.problems == []  # tests/data/esc50-mini holds ten clips
    assert dataset.folds == [1, 2, 3, 5]  # the subset has no fold-4 clip
    assert dataset.classes[0] == "dog"  # ordered by ESC-50's target id; 2-116400-A-0.wav is target 0
    by_name = {clip.path.name: clip for clip in dataset.clips}
    assert (by_name["1-115545-A-48.wav"].label, by_name["1-115545-A-48.wav"].fold) == ("fireworks", 1)
    assert (by_name["5-219044-A-46.wav"].label, by_name["5-219044-A-46.wav"].fold) == ("church_bells", 5)
    # the file name's last field is ESC-50's target id: classes come in target order
    by_target = {int(clip.path.stem.split("-")[-1]): clip.label for clip in dataset.clips}
    assert dataset.classes == [by_target[target] for target in sorted(by_target)]

def test_esc50_missing_file_is_reported_and_the_rest_kept(shared_data, tmp_path):
    root = tmp_path / "esc50"
    shutil.copytree(shared_data / "esc50-mini", root)
    (root / "audio" / "2-116400-A-0.wav").unlink()
    dataset = read_esc50(root)
    assert len(dataset.clips) == 9
    assert [(p.path, p.reason) for p in dataset.problems] == [(str(root / "audio" / "2-116400-A-0.wav"), "file not found")]
    assert "dog" in dataset.classes  # the class list comes from the metadata, not from the files found


def test_urbansound8k_layout_with_mixed_rates_and_channels(tmp_path, synthetic):
    US8K_CLASSES, US8K_SLICES = synthetic.us8k_classes, synthetic.us8k_slices
    dataset = open_dataset(synthetic.make_urbansound8k(tmp_path / "UrbanSound8K"))
    assert dataset.name == "urbansound8k" and dataset.classes == US8K_CLASSES
    assert dataset.folds == [1, 2, 3]
    assert [(c.path.parent.name, c.label, c.fold) for c in dataset.clips] == [
        (f"fold{fold}", US8K_CLASSES[class_id], fold) for fold, class_id, *_ in US8K_SLICES
    ]
    for clip, (_, class_id, rate, channels, _) in zip(dataset.clips, US8K_SLICES):
        waveform, loaded_rate = load_audio(clip.path, sample_rate=44100)
        assert loaded_rate == 44100 and waveform.ndim == 1 and abs(len(waveform) - 22050) <= 4  # 11025 Hz: 5512 frames
        spectrum = np.abs(np.fft.rfft(waveform))
        assert abs(np.argmax(spectrum) * 44100 / len(waveform) - 200.0 * (class_id + 1)) < 5


def test_urbansound8k_missing_slice_reported(tmp_path, synthetic):
    dataset = read_urbansound8k(synthetic.make_urbansound8k(tmp_path / "us8k", missing={"1001-1-0-0.wav"}))
    assert len(dataset.clips) == 5
    assert dataset.problems[0].path.endswith("fold1/1001-1-0-0.wav") and dataset.problems[0].reason == "file not found"


def test_csv_dataset_with_folds_and_images(tmp_path, synthetic):
    synthetic.write_tone(tmp_path / "a.wav", 16000, 1, "PCM_16", 300)
    synthetic.write_tone(tmp_path / "b.wav", 16000, 1, "PCM_16", 600)
    (tmp_path / "list.csv").write_text("path,label,fold,image\na.wav,rain,1,a.png\nb.wav,dog bark,2,\ngone.wav,rain,2,\n")
    dataset = read_csv_dataset(tmp_path / "list.csv")
    assert dataset.classes == ["dog bark", "rain"]
    assert [(c.path.name, c.label, c.fold, c.image) for c in dataset.clips] == [
        ("a.wav", "rain", 1, tmp_path / "a.png"),
        ("b.wav", "dog bark", 2, None),
    ]
    assert dataset.problems[0].path == str(tmp_path / "gone.wav")


def test_csv_without_required_columns_names_them(tmp_path):
    (tmp_path / "bad.csv").write_text("file,class\na.wav,rain\n")
    with pytest.raises(DatasetError, match=r"bad.csv lacks the column\(s\) path, label"):
        read_csv_dataset(tmp_path / "bad.csv")


def test_class_folders(tmp_path, synthetic):
    for label in ("rain", "wind"):
        (tmp_path / label).mkdir()
        synthetic.write_tone(tmp_path / label / "x.wav", 8000, 1, "PCM_16", 100)
    (tmp_path / "rain" / "notes.txt").write_text("not audio")
    dataset = open_dataset(tmp_path)
    assert dataset.classes == ["rain", "wind"]
    assert [(c.path.name, c.label, c.fold) for c in dataset.clips] == [("x.wav", "rain", None), ("x.wav", "wind", None)]


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="holds no class sub-folders"):
        read_class_folders(tmp_path)


def test_vggsound_csv_over_extracted_clips_and_frames(tmp_path, synthetic):
    (tmp_path / "audio").mkdir()
    (tmp_path / "frames").mkdir()
    synthetic.write_tone(tmp_path / "audio" / "abc_000030.wav", 16000, 1, "PCM_16", 440)
    synthetic.write_tone(tmp_path / "audio" / "xyz_000005.flac", 16000, 1, "PCM_16", 880)
    (tmp_path / "frames" / "abc_000030.jpg").write_bytes(b"")
    (tmp_path / "vggsound.csv").write_text("abc,30,dog barking,train\nxyz,5,playing piano,test\nmissing,1,dog barking,train\n")
    dataset = read_vggsound(tmp_path / "vggsound.csv", frame_dir=tmp_path / "frames")
    assert dataset.classes == ["dog barking", "playing piano"]
    assert [(c.path.name, c.label, c.split, c.image) for c in dataset.clips] == [
        ("abc_000030.wav", "dog barking", "train", tmp_path / "frames" / "abc_000030.jpg"),
        ("xyz_000005.flac", "playing piano", "test", None),
    ]
    assert [p.path for p in dataset.problems] == [str(tmp_path / "audio" / "missing_000001")]


def test_unknown_location_says_what_to_pass(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset"):
        open_dataset(tmp_path / "nowhere")


def plant_non_regular_clips(folder) -> set[str]:
    """A FIFO, a directory and a symlink loop, each named like a clip, in `folder`; returns their paths."""
    os.mkfifo(folder / "fifo.wav")
    (folder / "folder.wav").mkdir()
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    return {str(folder / name) for name in ("fifo.wav", "folder.wav", "loop.wav")}


def test_class_folders_keep_only_regular_files(tmp_path, synthetic):
    (tmp_path / "dog").mkdir()
    synthetic.write_tone(tmp_path / "dog" / "a.wav", 8000, 1, "PCM_16", 100)
    planted = plant_non_regular_clips(tmp_path / "dog")
    (tmp_path / "cat").mkdir()
    plant_non_regular_clips(tmp_path / "cat")  # a class with no real clip is no class
    dataset = read_class_folders(tmp_path)
    assert [clip.path.name for clip in dataset.clips] == ["a.wav"] and dataset.classes == ["dog"]
    reasons = {problem.path: problem.reason for problem in dataset.problems}
    assert planted <= set(reasons)
    assert "pipe" in reasons[str(tmp_path / "dog" / "fifo.wav")] and "link" in reasons[str(tmp_path / "dog" / "loop.wav")]


def test_csv_rows_naming_a_fifo_are_problems(tmp_path, synthetic):
    synthetic.write_tone(tmp_path / "a.wav", 8000, 1, "PCM_16", 100)
    plant_non_regular_clips(tmp_path)
    (tmp_path / "list.csv").write_text("path,label\na.wav,dog\nfifo.wav,dog\nfolder.wav,cat\nloop.wav,cat\n")
    dataset = read_csv_dataset(tmp_path / "list.csv")
    assert [clip.path.name for clip in dataset.clips] == ["a.wav"] and len(dataset.problems) == 3
