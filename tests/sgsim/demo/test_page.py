"""The page's handlers without a browser: what a request may name, the limits, and errors shown as text."""

from __future__ import annotations

import pytest

from sgsim.demo.uploads import UploadLimits


@pytest.fixture
def page(gradio, tmp_path, monkeypatch, shared_data):
    """A DemoPage whose upload folder holds one real sound; returns (page, gradio, upload folder)."""
    from sgsim.demo.page import DemoPage

    uploads = tmp_path / "uploads"
    (uploads / "h1").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    (uploads / "h1" / "rain.wav").write_bytes((shared_data / "audio" / "raining.wav").read_bytes())
    return DemoPage(engine=None, limits=UploadLimits(max_steps=50)), gradio, uploads


def ask(page, sound, **fields):
    values = {"source_kind": "seed", "seed": 3, "photo": None, "latent": None, "text": "", "steps": 10, "invert_steps": 5}
    return page.request(sound, **{**values, **fields})


def test_a_valid_request_names_only_checked_uploads(page):
    demo, _, uploads = page
    request = ask(demo, str(uploads / "h1" / "rain.wav"), text="  a storm ")
    assert request.sound == (uploads / "h1" / "rain.wav").resolve() and request.sound_name == "rain.wav"
    assert (request.source, request.source_kind, request.text, request.steps) == (3, "seed", "a storm", 10)


@pytest.mark.parametrize("fields, expected", [
    ({"sound": "/etc/passwd"}, "only files uploaded through this page are read"),
    ({"sound": None}, "no sound given"),
    ({"source_kind": "latent", "latent": "/etc/hostname"}, "only files uploaded through this page are read"),
    ({"source_kind": "photo", "photo": None}, "no photo given"),
    ({"seed": -1}, "the seed must be a whole number"),
    ({"seed": float("nan")}, "the seed must be a whole number"),
    ({"seed": 2.5}, "the seed must be a whole number"),
    ({"steps": 51}, "steps must be a whole number from 1 to 50"),
    ({"invert_steps": 0}, "inversion steps must be a whole number"),
    ({"source_kind": "../../etc"}, "unknown source"),
])
def test_bad_requests_are_page_errors(page, fields, expected):
    demo, gr, uploads = page
    sound = fields.pop("sound", str(uploads / "h1" / "rain.wav"))
    with pytest.raises(gr.Error) as error:
        ask(demo, sound, **fields)
    assert expected in error.value.message and str(uploads) not in error.value.message


def test_a_file_name_is_shown_as_text_never_as_markup(page):
    demo, gr, uploads = page
    hostile = uploads / "h1" / "<img src=x onerror=alert(1)>.wav"
    hostile.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    with pytest.raises(gr.Error) as error:
        demo.check_sound(str(hostile))
    assert "&lt;img src=x onerror=alert(1)&gt;.wav" in error.value.message and "<img" not in error.value.message


def test_the_status_line_counts_time_from_the_start_and_estimates_what_is_left(gradio):
    """Elapsed time runs from the job's start (not from the last preview) and the time left follows the rate so far."""
    from sgsim.demo.page import ProgressClock

    now = [100.0]
    clock = ProgressClock(lambda: now[0])
    assert clock.line("editing", 0, 60) == "editing: 0 of 60 steps · 0 s elapsed"
    now[0] = 112.0
    assert clock.line("editing", 32, 60) == "editing: 32 of 60 steps · 12 s elapsed · about 10 s left"
    now[0] = 122.5
    assert clock.line("rendering frames", 60, 60, "frames") == "rendering frames: 60 of 60 frames · 22 s elapsed"
