"""Every entry point that takes a photo follows the one photo policy (sgsim.photo_inversion via ImageSource.plan): the
same method, reason and alignment, printed as a note and recorded with the reconstruction's distances."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

from sgsim.editing import ImageSource, Target
from stylegan2 import load_generator
from tests.sgsim.test_style_encoder_file import authors_checkpoint

STEPS = 1


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "cache"))  # no published encoder, LPIPS or identity at hand


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory, tiny_generator_file):
    return authors_checkpoint(tmp_path_factory.mktemp("encoder") / "tiny_e4e.pt", load_generator(tiny_generator_file))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "me.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def sound(shared_data):
    return shared_data / "audio" / "thunderstorm.wav"


def _cli(run, tmp_path, *args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "note: inversion: e4e (the encoder given" in result.output  # the choice and its reason, printed
    return result


def via_invert(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    out = tmp_path / "inv"
    _cli(run, tmp_path, "invert", "--image", str(photo), "--photo-encoder", str(encoder), "--generator", str(tiny_generator_file),
         "--device", "cpu", "--out", str(out))
    assert (out / "input.png").is_file() and (out / "reconstruction.png").is_file()
    return json.loads((out / "run.json").read_text())


def via_edit(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    out = tmp_path / "edit"
    _cli(run, tmp_path, "edit", "--audio", str(sound), "--image", str(photo), "--photo-encoder", str(encoder), "--out", str(out))
    assert (out / "input.png").is_file()
    return json.loads((out / "run.json").read_text())["source"]["inversion"]


def via_video(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    out = tmp_path / "clip.mp4"
    _cli(run, tmp_path, "video", "--audio", str(sound), "--image", str(photo), "--photo-encoder", str(encoder), "--fps", "2",
         "--keyframe-every", "1", "--out", str(out))
    return json.loads(out.with_suffix(".json").read_text())["source"]["inversion"]


def via_direction(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    out = tmp_path / "library"
    _cli(run, tmp_path, "direction", "--audio", str(sound), "--image", str(photo), "--photo-encoder", str(encoder),
         "--holdout", "0", "--out", str(out))
    return json.loads((out / "run.json").read_text())["inversions"][0]


def via_apply(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    library = tmp_path / "library"
    assert run("direction", "--audio", str(sound), "--seeds", "0", "--holdout", "0", "--out", str(library)).exit_code == 0
    out = tmp_path / "apply"
    _cli(run, tmp_path, "apply", "--direction", str(library / "thunderstorm.sgdir"), "--image", str(photo), "--photo-encoder",
         str(encoder), "--generator", str(tiny_generator_file), "--device", "cpu", "--out", str(out))
    return json.loads((out / "run.json").read_text())["inversions"][0]


def via_batch(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"name,audio,image\nstorm,{sound},{photo}\n")
    _cli(run, tmp_path, "batch", str(jobs), "--photo-encoder", str(encoder), "--out", str(tmp_path / "batch"))
    (record,) = tmp_path.joinpath("batch").rglob("run.json")
    return json.loads(record.read_text())["source"]["inversion"]


def via_demo(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    from sgsim.demo import EditRequest
    from sgsim.demo.engine import DemoEngine

    engine = DemoEngine(editor, tmp_path / "demo", {"generator": str(tiny_generator_file), "photo_encoder": str(encoder)})
    request = EditRequest(sound=sound, sound_name="t.wav", source=photo, source_kind="photo", source_name="me.png", steps=STEPS)
    return engine.edit(request, lambda *_: None, threading.Event()).record["source"]["inversion"]


def via_api(run, tmp_path, photo, sound, encoder, editor, tiny_generator_file):
    editor.edit(ImageSource(photo, encoder=encoder), Target(audio=sound), steps=STEPS)
    return editor.inversions[-1]


ENTRY_POINTS = [via_invert, via_edit, via_video, via_direction, via_apply, via_batch, via_demo, via_api]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda f: f.__name__[4:])
def test_every_photo_path_records_the_same_policy(entry_point, run, tmp_path, photo, sound, encoder_file, editor,
                                                   tiny_generator_file):
    record = entry_point(run, tmp_path, photo, sound, encoder_file, editor, tiny_generator_file)
    assert record["image"] == str(photo) and record["encoder"] == str(encoder_file)
    assert record["method"] == "e4e" and record["method_reason"].startswith(f"the encoder given ({encoder_file}) is at hand")
    assert record["align"] is False and record["align_reason"].startswith("centre crop: not a face generator")
    assert (record["steps"], record["refine_steps"]) == (0, 0)
    assert set(record["reconstruction"]) == {"pixel_mse"} and record["reconstruction"]["pixel_mse"] > 0
