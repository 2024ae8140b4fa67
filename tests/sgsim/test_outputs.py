"""The writers of sgsim.outputs: MP4 decoded back with PyAV, weights checksums, run records."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from sgsim.errors import SgsimError
from sgsim.outputs import is_run_folder, run_record, weights_record, write_gif, write_json, write_mp4

av = pytest.importorskip("av")


def _frames(count: int, height: int = 32, width: int = 48):
    """A generator of distinct frames, so write_mp4 can only stream them (it never gets a list)."""
    for i in range(count):
        picture = np.zeros((height, width, 3), np.uint8)
        picture[:, : (i + 1) * width // count] = (255, 128, 0)
        yield picture


def test_mp4_decodes_back_to_its_frames_size_and_audio(tmp_path):
    rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * rate)) / rate)).astype(np.float32)
    assert write_mp4(tmp_path / "edit.mp4", _frames(25), fps=10, audio=(tone, rate)) == 25
    with av.open(str(tmp_path / "edit.mp4")) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 25 and decoded[0].shape == (32, 48, 3)
    # The last frame is all orange, the first orange only in its left 1/25th (H.264 is lossy: a tolerance).
    assert np.abs(decoded[-1].astype(int) - [255, 128, 0]).mean() < 8
    assert decoded[0][:, 24:].mean() < 8
    with av.open(str(tmp_path / "edit.mp4")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(samples / audio.rate - 1.5) < 0.05  # AAC adds at most a frame of priming / padding


def test_mp4_takes_tensor_snapshots_and_pads_odd_sizes(tmp_path):
    frames = (torch.zeros(2, 3, 15, 15) for _ in range(3))  # two edits side by side: 30 x 15, odd height
    write_mp4(tmp_path / "snap.mp4", frames, fps=25)
    with av.open(str(tmp_path / "snap.mp4")) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
        assert not container.streams.audio
    assert sizes == [(30, 16)] * 3


def test_mp4_refuses_bad_input_and_leaves_nothing(tmp_path):
    with pytest.raises(SgsimError, match="no frames"):
        write_mp4(tmp_path / "a.mp4", iter(()), fps=10)
    with pytest.raises(SgsimError, match="frame 1 .* every frame needs the same size"):
        write_mp4(tmp_path / "b.mp4", iter([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)]), fps=10)
    with pytest.raises(SgsimError, match="fps must be"):
        write_mp4(tmp_path / "c.mp4", _frames(2), fps=0)
    assert list(tmp_path.iterdir()) == []


def test_gif_holds_one_frame_per_snapshot(tmp_path):
    from PIL import Image

    write_gif(tmp_path / "o.gif", [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)])
    with Image.open(tmp_path / "o.gif") as gif:
        assert gif.n_frames == 2 and gif.size == (16, 8)


def test_cached_weights_reuse_the_checksum_the_cache_checked(tmp_path, monkeypatch):
    import checkpoints
    from checkpoints.cache import cached_path, record_checksum

    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    item = next(e for e in checkpoints.entries() if e.sha256 is None)
    cached = cached_path(item)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    record_checksum(item.name, "ab" * 32, len(b"weights"))
    other = tmp_path / "mine.pt"
    other.write_bytes(b"other")
    record = weights_record({"generator": cached, "clip": other})
    assert record["generator"] == {"path": str(cached), "sha256": "ab" * 32, "sha256_from": "cache record"}
    assert record["clip"]["sha256"] == hashlib.sha256(b"other").hexdigest() and record["clip"]["sha256_from"] == "hashed"
    cached.write_bytes(b"changed size")  # a file that no longer matches its record is hashed again
    assert weights_record({"generator": cached})["generator"]["sha256"] == hashlib.sha256(b"changed size").hexdigest()


def test_run_records_mark_their_folder_as_replaceable(tmp_path):
    write_json(tmp_path / "run.json", run_record("edit", ["sgsim", "edit", "--seed", "1"], steps=3))
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["command"] == "edit" and data["argv"] == ["sgsim", "edit", "--seed", "1"] and data["steps"] == 3
    assert data["versions"]["numpy"] == np.__version__
    assert is_run_folder(tmp_path)
    (tmp_path / "run.json").write_text('{"experiment": 1}')  # someone else's run.json
    assert not is_run_folder(tmp_path)
    (tmp_path / "run.json").write_text("not json")
    assert not is_run_folder(tmp_path)


def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(tmp_path):
    import csv

    from sgsim.outputs import write_csv

    rows = [{"name": "=HYPERLINK(\"http://x\")", "other": "+1", "n": -3, "plain": "rain"},
            {"name": "@SUM(A1)", "other": "-2", "n": 4.5, "plain": "\tx"}]
    write_csv(tmp_path / "t.csv", rows)
    with open(tmp_path / "t.csv", newline="") as stream:
        read = list(csv.DictReader(stream))
    assert [r["name"] for r in read] == ["'=HYPERLINK(\"http://x\")", "'@SUM(A1)"]
    assert [r["other"] for r in read] == ["'+1", "'-2"] and [r["n"] for r in read] == ["-3", "4.5"]  # numbers stay numbers
    assert [r["plain"] for r in read] == ["rain", "'\tx"]
def test_a_run_record_nested_too_deeply_is_not_an_sgsim_run(tmp_path):
    from sgsim.outputs import is_run_folder

    (tmp_path / "run.json").write_text("[" * 100000 + "]" * 100000)
    assert is_run_folder(tmp_path) is False
