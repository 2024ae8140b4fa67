"""The page's handlers without a browser: what a request may name, the limits, and errors shown as text."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

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


def ask(page, sound=None, **fields):
    values = {"source_kind": "seed", "seed": 3, "photo": None, "latent": None, "text": "", "steps": 10, "invert_steps": 5,
              "inversion_method": "automatic", "photo_encoder": "automatic", "translate_x": 0.0, "translate_y": 0.0, "rotate": 0.0}
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
    ({"seed": True}, "the seed must be a whole number"),  # the raw JSON value: Gradio's preprocessing is skipped
    ({"seed": "3"}, "the seed must be a whole number"),
    ({"steps": 1e300}, "steps must be a whole number from 1 to 50, got 1e+300"),
    ({"text": 5}, "the text must be at most 1000 characters of text"),
    ({"text": "x" * 1001}, "the text must be at most 1000 characters of text"),
    ({"source_kind": ["seed"] * 1000}, "unknown source"),
    ({"source_kind": "photo", "photo": {"url": "x"}}, "the photo is not an uploaded file"),
    ({"inversion_method": "pSp"}, "unknown inversion method &#x27;pSp&#x27;; choose one of automatic, e4e, optimise, e4e+optimise"),
    ({"photo_encoder": "/etc/passwd"}, "unknown photo encoder &#x27;/etc/passwd&#x27;; choose one of automatic, e4e-ffhq"),
    ({"photo_encoder": None}, "unknown photo encoder None"),
    ({"translate_x": 1.5}, "translate X must be a number from -1 to 1, got 1.5"),
    ({"translate_y": float("nan")}, "translate Y must be a number from -1 to 1, got nan"),
    ({"rotate": "90"}, "rotate must be a number from -180 to 180"),
])
def test_bad_requests_are_page_errors(page, fields, expected):
    demo, gr, uploads = page
    sound = fields.pop("sound", str(uploads / "h1" / "rain.wav"))
    with pytest.raises(gr.Error) as error:
        ask(demo, sound, **fields)
    assert expected in error.value.message and str(uploads) not in error.value.message


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -0.1, 2.5, "1", None, True])
def test_a_strength_outside_the_slider_is_a_page_error_before_any_work(page, strength):
    """NaN fails every comparison, so it passed the slider's bounds and reached latent.npz and run.json."""
    demo, gr, uploads = page
    with pytest.raises(gr.Error, match="strength must be a number from 0 to 2"):
        demo.restrength(object(), strength)  # refused before the engine (None here) is asked for anything
    edit = demo.edit(str(uploads / "h1" / "rain.wav"), "seed", 3, None, None, "", 10, 5, strength, "automatic", "automatic",
                     0.0, 0.0, 0.0, [], session=None)
    with pytest.raises(gr.Error, match="strength must be a number from 0 to 2"):
        next(edit)


@pytest.mark.parametrize("method", ["automatic", "e4e", "optimise", "e4e+optimise"])
def test_the_inversion_method_and_encoder_offered_reach_the_request(page, method):
    demo, _, uploads = page
    request = ask(demo, str(uploads / "h1" / "rain.wav"), inversion_method=method, photo_encoder="e4e-ffhq")
    assert request.inversion_method == (None if method == "automatic" else method) and request.photo_encoder == "e4e-ffhq"
    assert ask(demo, str(uploads / "h1" / "rain.wav")).photo_encoder is None  # automatic: the photo policy picks


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_a_photo_edit_ends_with_its_method_and_reconstruction_distance_as_the_cli_prints_them(page, engine):
    from sgsim.photo_inversion import describe_distances

    demo, _, uploads = page
    demo.engine = engine
    photo = uploads / "h1" / "me.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photo)
    updates = list(demo.edit(str(uploads / "h1" / "rain.wav"), "photo", 3, str(photo), None, "", 1, 2, 1.0, "optimise",
                             "automatic", 0.0, 0.0, 0.0, [], session=SimpleNamespace(session_hash="visitor")))
    run, status = updates[-1][1], updates[-1][-1]
    distances = run.record["source"]["inversion"]["reconstruction"]
    assert status.endswith(f" · inversion: optimise, reconstruction distance to the photo: {describe_distances(distances)}")
    assert "pixel MSE" in status


@pytest.mark.parametrize("kind", ["sound", "photo", "latent"])
@pytest.mark.parametrize("payload, expected", [
    (None, "no {} given; upload one first"),
    ({"meta": {"_type": "gradio.FileData"}}, "the {} is not an uploaded file; upload it again"),
    ({"path": None, "meta": {"_type": "gradio.FileData"}}, "the {} is not an uploaded file; upload it again"),
    ({"path": "{uploads}/h1/gone.wav", "meta": {"_type": "gradio.FileData"}}, "&#x27;gone.wav&#x27; is not an uploaded file"),
    ({"path": "{uploads}/h1/a\x00.wav"}, "is not an uploaded file; upload it again"),
    ({"path": "{uploads}/h1/" + "x" * 5000}, "is not an uploaded file; upload it again"),
], ids=["null", "no path", "null path", "missing file", "NUL byte", "over-long name"])
def test_a_malformed_upload_payload_is_one_clear_line(page, kind, payload, expected):
    """A Gradio file value that is null, has no path or names no file is one line naming what to do: never "null"."""
    demo, gr, uploads = page
    if isinstance(payload, dict) and isinstance(payload.get("path"), str):
        payload = {**payload, "path": payload["path"].replace("{uploads}", str(uploads))}
    fields = {"sound": str(uploads / "h1" / "rain.wav")}
    if kind == "sound":
        fields["sound"] = payload
    else:
        fields.update(source_kind=kind, **{kind: payload})
    with pytest.raises(gr.Error) as error:
        ask(demo, **fields)
    shown = error.value.message
    what = {"latent": "latent file"}.get(kind, kind)
    assert expected.format(what) in shown and "null" not in shown and "\n" not in shown and str(uploads) not in shown


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


def test_after_cancel_no_step_report_overwrites_the_cancelled_status(page):
    """Reports queued before Cancel, or from the step then under way, must not reach the page over "cancelled"."""
    demo = page[0]
    session = SimpleNamespace(session_hash="visitor")

    def job(report, cancelled):
        report(1, 1000, None)
        report(2, 1000, None)  # still queued when Cancel is pressed (the page is slower than the steps)
        assert cancelled.wait(10)
        report(3, 1000, None)  # from the step under way when Cancel was pressed
        return "stopped"

    updates = demo._running(session, job, {})
    assert next(updates) == ("step", (1, 1000, None))
    assert demo.cancel(session)
    assert list(updates) == [("done", "stopped")]
    assert not demo.cancel(session)  # the finished job left nothing to cancel
