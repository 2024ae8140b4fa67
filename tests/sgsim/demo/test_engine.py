"""The demo's engine on the tiny real-format networks: the slider's renders, the downloads, previews and cancelling."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sgsim.demo import EditCancelled, EditRequest
from sgsim.editing import Target
from sgsim.latents import read_latent_file
from sgsim.outputs import to_uint8

STEPS = 3


@pytest.fixture(scope="module")
def sound(shared_data):
    return shared_data / "audio" / "thunderstorm.wav"


@pytest.fixture(scope="module")
def run(engine, sound):
    request = EditRequest(sound=sound, sound_name="thunderstorm.wav", source=7, source_kind="seed", steps=STEPS)
    return engine.edit(request, lambda *step: None, threading.Event())


def test_the_slider_renders_what_the_editor_sweeps(engine, run, sound):
    reference = engine.editor.edit(7, Target(audio=sound), steps=STEPS, strengths=(0.0, 0.5, 1.0))
    for s, strength in enumerate((0.0, 0.5, 1.0)):
        torch.testing.assert_close(engine.render(run, strength), reference.images[0, s], rtol=0, atol=1e-5)
    assert (engine.render(run, 1.0) - engine.render(run, 0.0)).abs().mean() > 0.01  # the edit moved the image


def test_downloads_hold_the_shown_image_and_a_latent_that_starts_there(engine, run):
    shown = engine.render(run, 0.5)
    png, latent, report = engine.write_downloads(run, 0.5, shown)
    np.testing.assert_array_equal(np.asarray(Image.open(png)), to_uint8(shown)[0])
    stored = read_latent_file(latent)  # as `sgsim edit --latent` reads it
    assert stored.key == "w" and stored.noise == {}
    torch.testing.assert_close(engine.editor.render(torch.from_numpy(stored.latent)[None])[0], shown, rtol=0, atol=1e-5)
    record = json.loads(report.read_text())
    assert record["command"] == "demo" and record["versions"]["torch"] and record["sgsim"]
    assert record["strength"] == 0.5 and record["source"] == {"kind": "seed", "seed": 7, "inversion": None}
    assert record["target"] == {"audio": "thunderstorm.wav", "text": None} and record["settings"]["steps"] == STEPS
    assert set(record["weights"]) == {"generator", "audio_encoder", "clip"} and record["outputs"] == [p.name for p in (png, latent, report)]


def test_progress_reports_every_step_with_previews_of_the_optimisation(engine, sound):
    calls = []
    request = EditRequest(sound=sound, sound_name="t.wav", source=7, source_kind="seed", steps=40, text="a storm")
    engine.edit(request, lambda done, total, preview: calls.append((done, total, preview)), threading.Event())
    assert [done for done, _, _ in calls] == list(range(41)) and {total for _, total, _ in calls} == {40}
    previews = [preview for _, _, preview in calls if preview is not None]
    assert [done for done, _, preview in calls if preview is not None] == [1, *range(2, 41, 2)]  # step 1, then every 40 // 20
    assert all(p.shape == (32, 32, 3) and p.dtype == np.uint8 for p in previews)
    assert np.abs(previews[0].astype(int) - previews[-1].astype(int)).mean() > 0  # they follow the optimisation


def test_the_first_preview_comes_after_the_first_step_of_a_long_edit(engine, sound):
    """A visitor sees the edit begin after one step, not after steps // 20 of them (minutes on a CPU)."""
    cancelled, seen = threading.Event(), []

    def spy(done, total, preview):
        seen.append((done, preview is not None))
        if preview is not None:
            cancelled.set()  # the spy has what it needs: stop the 1000-step edit

    request = EditRequest(sound=sound, sound_name="t.wav", source=7, source_kind="seed", steps=1000)
    with pytest.raises(EditCancelled):
        engine.edit(request, spy, cancelled)
    assert seen == [(0, False), (1, True)]


def test_cancelling_stops_at_the_next_step_and_frees_the_device(engine, sound, run):
    cancelled, steps_seen = threading.Event(), []

    def progress(done, total, preview):
        steps_seen.append(done)
        if done == 2:
            cancelled.set()

    request = EditRequest(sound=sound, sound_name="t.wav", source=7, source_kind="seed", steps=1000)
    folders = sorted(engine.results.iterdir())
    with pytest.raises(EditCancelled, match="cancelled at step 3 of 1000"):
        engine.edit(request, progress, cancelled)
    assert steps_seen == [0, 1, 2] and sorted(engine.results.iterdir()) == folders  # nothing written
    engine.render(run, 1.0)  # the device lock was released


@pytest.fixture
def noisy_generator(engine):
    """The engine's generator with its per-layer noise switched on (a fresh network's noise strengths are 0)."""
    strengths = [p for name, p in engine.editor.generator.named_parameters() if name.endswith("noise_strength")]
    with torch.no_grad():
        for p in strengths:
            p.fill_(0.5)
    yield
    with torch.no_grad():
        for p in strengths:
            p.zero_()


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_a_photo_source_keeps_its_fitted_noise_for_the_slider(engine, run, sound, tmp_path, noisy_generator):
    photo = tmp_path / "photo.png"
    Image.fromarray(to_uint8(engine.render(run, 1.0))[0]).save(photo)
    request = EditRequest(sound=sound, sound_name="t.wav", source=photo, source_kind="photo", source_name="me.png",
                          steps=2, invert_steps=2)
    inverted = engine.edit(request, lambda *step: None, threading.Event())
    source = dict(inverted.record["source"])
    inversion = source.pop("inversion")  # the photo policy's record (tests/sgsim/test_photo_policy.py)
    assert (inversion["method"], inversion["steps"]) == ("optimise", 2)
    assert inverted.noise and source == {"kind": "photo", "file": "me.png"}
    reference = engine.editor.edit(photo, Target(audio=sound), steps=2, invert_steps=2, strengths=(0.0, 1.0))
    torch.testing.assert_close(engine.render(inverted, 0.0), reference.images[0, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(engine.render(inverted, 1.0), reference.images[0, 1], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def encoder_file(engine, tmp_path_factory):
    """A tiny e4e checkpoint in the authors' format, fitted to the engine's generator."""
    from tests.sgsim.test_style_encoder_file import authors_checkpoint

    return authors_checkpoint(tmp_path_factory.mktemp("encoder") / "tiny_e4e.pt", engine.editor.generator)


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
@pytest.mark.parametrize("method, encoder_used, steps", [("e4e", True, 0), ("e4e+optimise", True, 0), ("optimise", False, 2)])
def test_a_photo_is_inverted_by_the_method_and_encoder_the_visitor_chose(engine, run, sound, tmp_path, encoder_file, method,
                                                                        encoder_used, steps):
    """The request's choice goes through the one photo policy (sgsim.photo_inversion), which run.json records."""
    photo = tmp_path / "photo.png"
    Image.fromarray(to_uint8(engine.render(run, 1.0))[0]).save(photo)
    request = EditRequest(sound=sound, sound_name="t.wav", source=photo, source_kind="photo", source_name="me.png",
                          steps=1, invert_steps=2, inversion_method=method, photo_encoder=str(encoder_file))
    record = engine.edit(request, lambda *step: None, threading.Event()).record
    inversion = record["source"]["inversion"]
    assert (inversion["method"], inversion["steps"]) == (method, steps)
    assert inversion["encoder"] == (str(encoder_file) if encoder_used else None)
    assert "pixel_mse" in inversion["reconstruction"]
    assert (record["settings"]["inversion_method"], record["settings"]["photo_encoder"]) == (method, str(encoder_file))
