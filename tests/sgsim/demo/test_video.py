"""The demo's video tab without a browser: DemoEngine.video on a real clip with the tiny networks, and its errors."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from sgsim.demo import EditCancelled, VideoRequest
from sgsim.errors import AudioError

CLIP_SECONDS = 2.0


@pytest.fixture(scope="module")
def clip(shared_data, tmp_path_factory):
    """The first 2 s of raining.wav, as a visitor would upload it."""
    waveform, rate = soundfile.read(shared_data / "audio" / "raining.wav", frames=int(CLIP_SECONDS * 44100), always_2d=True)
    path = tmp_path_factory.mktemp("uploads") / "rain.wav"
    soundfile.write(path, waveform[: int(CLIP_SECONDS * rate)], rate)
    return path


def decoded_frames(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        assert {stream.type for stream in container.streams} == {"video", "audio"}
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_a_video_has_round_duration_times_fps_frames_and_reports_every_stage(engine, clip):
    calls = []
    request = VideoRequest(sound=clip, sound_name="rain.wav", seed=3, fps=4, keyframe_every=0.5, steps=2)
    out = engine.video(request, lambda *call: calls.append(call), threading.Event())
    assert out.parent.parent == engine.results and out.name == "video.mp4"
    frames = decoded_frames(out)
    assert len(frames) == round(CLIP_SECONDS * 4) and frames[0].shape == (32, 32, 3)
    stages = [stage for stage, _, _ in calls]
    assert stages.index("embed") < stages.index("optimise") < stages.index("render")
    assert ("optimise", 2, 2) in calls and ("render", 8, 8) in calls


def test_a_silent_sound_is_one_line_and_writes_nothing(engine, tmp_path):
    silent = tmp_path / "quiet.wav"
    soundfile.write(silent, np.zeros(2 * 16000, np.float32), 16000)
    before = sorted(engine.results.iterdir())
    with pytest.raises(AudioError) as error:
        engine.video(VideoRequest(sound=silent, sound_name="quiet.wav", seed=3, fps=4, keyframe_every=0.5, steps=2),
                     lambda *call: None, threading.Event())
    assert "\n" not in str(error.value) and "quiet.wav" in str(error.value)
    assert sorted(engine.results.iterdir()) == before


@pytest.mark.parametrize("stage", ["optimise", "render"])
def test_cancelling_a_video_frees_the_device_and_leaves_no_folder(engine, clip, stage):
    cancelled = threading.Event()
    before = sorted(engine.results.iterdir())

    def progress(reached, done, total):
        if reached == stage:
            cancelled.set()

    with pytest.raises(EditCancelled, match=f"video cancelled while it was at {stage}"):
        # 16 frames: two render batches, so the second sees the flag the first one's progress set
        engine.video(VideoRequest(sound=clip, sound_name="rain.wav", seed=3, fps=8, keyframe_every=0.5, steps=4),
                     progress, cancelled)
    assert engine._device.acquire(blocking=False)
    engine._device.release()
    assert sorted(path.name for path in engine.results.iterdir()) == [path.name for path in before]


@pytest.fixture
def page(gradio, engine, clip, tmp_path, monkeypatch):
    """A DemoPage over the engine whose upload folder holds the clip; returns (page, gradio, the clip's upload path)."""
    from sgsim.demo.page import DemoPage
    from sgsim.demo.uploads import UploadLimits

    uploads = tmp_path / "uploads"
    (uploads / "h1").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    (uploads / "h1" / "rain.wav").write_bytes(clip.read_bytes())
    return DemoPage(engine, UploadLimits(max_keyframes=4)), gradio, str(uploads / "h1" / "rain.wav")


def make(page, sound, **fields):
    values = {"seed": 3, "fps": 4, "keyframe_every": 1.0, "steps": 2}
    session = SimpleNamespace(session_hash="visitor")
    return list(page.video(sound, **{**values, **fields}, session=session))


def test_the_page_shows_and_offers_the_engines_video(page):
    demo, _, sound = page
    *during, (shown, files, status) = make(demo, sound)
    assert files == [shown] and status == "done: the video is ready"
    assert any(line.startswith("rendering frames: ") and " s elapsed" in line for *_, line in during) and len(decoded_frames(shown)) == round(CLIP_SECONDS * 4)
    assert demo._cancels == {}  # the finished job leaves no cancel flag behind


@pytest.mark.parametrize("fields, expected", [
    ({"sound": "/etc/passwd"}, "only files uploaded through this page are read"),
    ({"sound": None}, "no sound given"),
    ({"fps": 13}, "fps must be a whole number from 1 to 12, got 13"),
    ({"steps": 201}, "steps must be a whole number from 1 to 200"),
    ({"keyframe_every": 0.1}, "seconds between keyframes must be a number from 0.5 to 5, got 0.1"),
    ({"keyframe_every": float("nan")}, "seconds between keyframes must be a number"),
    ({"keyframe_every": 0.5}, "rain.wav lasts 2.0 s: keyframes every 0.5 s make 5, over the demo&#x27;s 4"),
    ({"seed": -1}, "the seed must be a whole number from 0 to"),
])
def test_bad_video_requests_are_one_line_page_errors(page, fields, expected):
    demo, gr, sound = page
    with pytest.raises(gr.Error) as error:
        make(demo, fields.pop("sound", sound), **fields)
    assert expected in error.value.message and "\n" not in error.value.message and "/h1/" not in error.value.message


def test_a_silent_upload_is_refused_before_the_device(page, tmp_path):
    demo, gr, sound = page
    quiet = str(sound).replace("rain.wav", "quiet.wav")
    soundfile.write(quiet, np.zeros(16000, np.float32), 16000)
    with pytest.raises(gr.Error, match="quiet.wav"):
        make(demo, quiet)
