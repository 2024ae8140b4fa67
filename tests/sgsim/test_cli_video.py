"""`sgsim video` end to end on tiny real-format networks and a track of two real sounds with a silent gap."""

from __future__ import annotations

import hashlib
import json

import av
import numpy as np
import pytest
import soundfile

RATE = 44100


@pytest.fixture(scope="module")
def track(gap_track, tmp_path_factory):
    return gap_track(tmp_path_factory.mktemp("track") / "rain-gap-wind.wav")


def decoded(path):
    """(frames as uint8 arrays, seconds of audio) of an MP4."""
    with av.open(str(path)) as container:
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        seconds = sum(frame.samples for frame in container.decode(audio=0)) / rate
    return pictures, seconds


def test_video_writes_the_clip_and_its_record_together(run, track, tmp_path, tiny_generator_file):
    out = tmp_path / "clip.mp4"
    result = run("video", "--audio", str(track.path), "--seed", "3", "--out", str(out), "--fps", "10", "--window", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.mp4"]  # no staging left behind
    duration = track.duration
    pictures, seconds = decoded(out)
    assert len(pictures) == round(duration * 10) and abs(seconds - duration) < 1 / 10
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["command"] == "video" and record["video"]["frames"] == 90 and record["settings"]["fps"] == 10
    assert record["audio"]["sha256"] == hashlib.sha256(track.path.read_bytes()).hexdigest()
    assert record["weights"]["generator"]["sha256"] == hashlib.sha256(tiny_generator_file.read_bytes()).hexdigest()
    keyframes = record["keyframes"]
    assert [k["time_s"] for k in keyframes] == pytest.approx(np.arange(19) * 0.5)
    silent = [k["time_s"] for k in keyframes if not k["audible"]]
    assert silent == [3.5, 4.0, 4.5, 5.0, 5.5] and all(k["final_losses"]["clip"] == 0 for k in keyframes if not k["audible"])
    assert record["versions"]["torch"] and record["sgsim"]
    assert record["timings_s"]["render"] > 0 and record["settings"]["steps"] == 2


def test_same_seed_gives_identical_decoded_frames_and_a_rerun_replaces_its_own_output(run, track, tmp_path):
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for out in (first, second, second):  # the third run replaces the second's files: sgsim video wrote them
        result = run("video", "--audio", str(track.path), "--seed", "5", "--out", str(out), "--fps", "6", "--keyframe-every", "1")
        assert result.exit_code == 0, result.output
    a, b = decoded(first)[0], decoded(second)[0]
    assert len(a) == len(b) == 54 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.mp4", "b.json", "b.mp4"]


@pytest.mark.parametrize("case, expected", [
    ("silent-only", "no sound for the picture to follow"),
    ("digital silence", "the sound is silent"),
    ("corrupt", "corrupt"),
    ("unreadable", "no such audio file"),
    ("no source", "exactly one source"),
    ("not mp4", "ending in .mp4"),
    ("out is a folder", "is a folder"),
    ("foreign file", "sgsim video did not write it"),
    ("record nested 100000 deep", "sgsim video did not write it"),
    ("zero fps", "--fps"),
    ("negative keyframe spacing", "--keyframe-every"),
    ("a keyframe every microsecond", "keyframes every 1e-06 s over the 9.0 s sound make 9000001, over the limit of 1024"),
    ("tiny window", "--window"),
    ("bad device", "not a device name"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, track, tmp_path, case, expected, one_error_line):
    quiet, silent, corrupt = tmp_path / "quiet.wav", tmp_path / "silent.wav", tmp_path / "corrupt.wav"
    soundfile.write(quiet, np.full(3 * RATE, 1e-4, np.float32), RATE)  # -80 dBFS: not digital silence, but no window is audible
    soundfile.write(silent, np.zeros(3 * RATE, np.float32), RATE)
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    audio = {"silent-only": quiet, "digital silence": silent, "corrupt": corrupt, "unreadable": tmp_path / "missing.wav"}.get(case, track.path)
    out = {"not mp4": tmp_path / "clip.avi", "out is a folder": tmp_path}.get(case, tmp_path / "clip.mp4")
    if case == "foreign file":
        (tmp_path / "clip.mp4").write_bytes(b"someone else's video")
    if case == "record nested 100000 deep":
        (tmp_path / "clip.mp4").write_bytes(b"someone else's video")
        (tmp_path / "clip.json").write_text("[" * 100000 + "]" * 100000)
    source = [] if case == "no source" else ["--seed", "1"]
    extra = {"zero fps": ["--fps", "0"], "negative keyframe spacing": ["--keyframe-every", "-1"],
             "a keyframe every microsecond": ["--keyframe-every", "0.000001"], "tiny window": ["--window", "0.01"],
             "bad device": ["--device", "gpu0"]}.get(case, [])
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("video", "--audio", str(audio), *source, "--out", str(out), *extra)
    assert expected in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no staging folder left


def test_ctrl_c_while_encoding_leaves_nothing_behind(run, track, tmp_path, monkeypatch):
    import sgsim.outputs

    to_uint8, calls = sgsim.outputs.to_uint8, []

    def interrupted(images):
        calls.append(1)
        if len(calls) == 20:  # mid-video: the MP4 is half encoded in the staging folder
            raise KeyboardInterrupt
        return to_uint8(images)

    monkeypatch.setattr(sgsim.outputs, "to_uint8", interrupted)
    result = run("video", "--audio", str(track.path), "--seed", "1", "--out", str(tmp_path / "clip.mp4"), "--fps", "8")
    assert result.exit_code != 0 and len(calls) == 20
    assert list(tmp_path.iterdir()) == []


def test_loss_weights_by_name_reach_the_record(run, track, tmp_path, one_error_line):
    out = tmp_path / "clip.mp4"
    result = run("video", "--audio", str(track.path), "--seed", "2", "--out", str(out), "--fps", "4", "--keyframe-every", "3",
                 "--weight", "latent=0.5", "--weight", "smoothness=0.2", "--lambda-id", "0")
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "clip.json").read_text())["settings"]
    assert settings["weights"]["latent"] == 0.5 and settings["smoothness"] == settings["weights"]["smoothness"] == 0.2
    bad = run("video", "--audio", str(track.path), "--seed", "2", "--out", str(tmp_path / "other.mp4"), "--weight", "sparkle=1")
    assert "unknown loss term 'sparkle'" in one_error_line(bad) and not (tmp_path / "other.mp4").exists()


def test_keyframe_batches_warm_steps_and_the_work_resolution_reach_the_record(run, track, tmp_path):
    out = tmp_path / "clip.mp4"
    result = run("video", "--audio", str(track.path), "--seed", "2", "--out", str(out), "--fps", "4", "--keyframe-every", "3",
                 "--keyframe-batch", "2", "--warm-steps", "1", "--work-resolution", "16")
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "clip.json").read_text())["settings"]
    assert settings["keyframe_batch"] == 2 and settings["warm_steps"] == 1
    assert settings["work_resolution"] == {"requested": "16", "used": 16, "reason": "16: asked for"}


def test_a_learned_direction_makes_an_instant_video(run, track, tmp_path, tiny_generator_file, one_error_line):
    import torch

    from sgsim.editing.directions import SoundDirection, architecture
    from stylegan2 import load_generator

    G = load_generator(tiny_generator_file, device="cpu")
    direction = SoundDirection(name="rain", offset=torch.ones(G.num_ws, G.w_dim), target=torch.nn.functional.normalize(torch.ones(512), dim=0),
                               generator={"name": str(tiny_generator_file), "architecture": architecture(G)})
    path = direction.save(tmp_path / "rain.sgdir")
    result = run("video", "--audio", str(track.path), "--seed", "1", "--out", str(tmp_path / "clip.mp4"), "--fps", "4",
                 "--direction", str(path), "--steps", "0")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["direction"] == str(path) and record["settings"]["direction"]["name"] == "rain"
    assert len(decoded(tmp_path / "clip.mp4")[0]) == round(track.duration * 4)
    no_steps = run("video", "--audio", str(track.path), "--seed", "1", "--out", str(tmp_path / "other.mp4"), "--steps", "0")
    assert "--steps 0" in one_error_line(no_steps) and not (tmp_path / "other.mp4").exists()


def test_steps_auto_is_refused_for_a_video_in_one_line(run, track, tmp_path, one_error_line):
    result = run("video", "--audio", str(track.path), "--seed", "1", "--out", str(tmp_path / "clip.mp4"), "--steps", "auto")
    assert "steps auto is for edits and directions, not videos yet" in one_error_line(result)
    assert not (tmp_path / "clip.mp4").exists()
