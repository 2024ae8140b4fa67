"""`--world NAME` on every command that loads networks, and Editor.from_pretrained(world=...): a toy world written in
the world layout (tiny seeded networks, found through $SGSIM_WORLDS) is what loads, and run.json says so."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
import torch
from click.testing import CliRunner

from sgsim.cli import main
from sgsim.worlds import DEFAULTS_FILE, ROOT_VARIABLE


@pytest.fixture
def world_run(worlds, monkeypatch):
    """Invoke `sgsim ARGS... --world shapes` with $SGSIM_WORLDS at the toy world (a CPU and 2 steps where they apply)."""
    monkeypatch.setenv(ROOT_VARIABLE, str(worlds.root.parent))

    def invoke(*args: str, world: str = "shapes"):
        return CliRunner().invoke(main, [*args, "--world", world], catch_exceptions=False, prog_name="sgsim")
    return invoke


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_world_networks(record: dict, files, parts=("generator", "audio_encoder", "clip")) -> None:
    """run.json names the world and its files were the ones loaded (by checksum)."""
    paths = {"generator": files.generator, "audio_encoder": files.encoder, "clip": files.clip}
    assert record.get("world", record.get("settings", {}).get("world")) == "shapes"
    for part in parts:
        assert record["weights"][part]["sha256"] == sha256(paths[part]), part


@pytest.fixture(scope="module")
def raining(shared_data):
    return shared_data / "audio" / "raining.wav"


def test_edit_loads_the_worlds_networks(world_run, worlds, raining, tmp_path):
    out = tmp_path / "edit"
    result = world_run("edit", "--audio", str(raining), "--seed", "1", "--steps", "2", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert_world_networks(record, worlds)
    assert record["settings"]["generator"] == str(worlds.generator) and record["settings"]["encoder"] == worlds.encoder_name
    assert record["settings"]["encoder_checkpoint"] == str(worlds.encoder) and record["settings"]["clip_weights"] == str(worlds.clip)


def test_generate_invert_direction_and_apply_load_the_worlds_generator(world_run, worlds, raining, tmp_path):
    generated = world_run("generate", "--seed", "2", "--out", str(tmp_path / "gen"))
    assert generated.exit_code == 0, generated.output
    assert_world_networks(json.loads((tmp_path / "gen" / "run.json").read_text()), worlds, ("generator",))
    inverted = world_run("invert", "--image", str(tmp_path / "gen" / "seed0002.png"), "--steps", "2", "--refine-steps", "0",
                         "--device", "cpu", "--out", str(tmp_path / "inv"))
    assert inverted.exit_code == 0, inverted.output
    assert_world_networks(json.loads((tmp_path / "inv" / "run.json").read_text()), worlds, ("generator",))
    learned = world_run("direction", "--audio", str(raining), "--seeds", "0-1", "--holdout", "0", "--steps", "2", "--device", "cpu",
                        "--out", str(tmp_path / "rain.sgdir"))
    assert learned.exit_code == 0, learned.output
    assert_world_networks(json.loads((tmp_path / "rain.json").read_text()), worlds)
    applied = world_run("apply", "--direction", str(tmp_path / "rain.sgdir"), "--seed", "4", "--device", "cpu", "--out", str(tmp_path / "apply"))
    assert applied.exit_code == 0, applied.output
    assert_world_networks(json.loads((tmp_path / "apply" / "run.json").read_text()), worlds, ("generator",))


def test_video_and_batch_load_the_worlds_networks(world_run, worlds, raining, gap_track, tmp_path):
    track = gap_track(tmp_path / "track.wav")
    (worlds.root / DEFAULTS_FILE).write_text(json.dumps({"video": {"window": 1.5}}))  # the world's own video window
    try:
        video = world_run("video", "--audio", str(track.path), "--seed", "3", "--steps", "2", "--device", "cpu", "--fps", "4",
                          "--out", str(tmp_path / "clip.mp4"))
    finally:
        (worlds.root / DEFAULTS_FILE).unlink()
    assert video.exit_code == 0, video.output
    record = json.loads((tmp_path / "clip.json").read_text())
    assert_world_networks(record, worlds)
    assert record["settings"]["window"] == 1.5
    jobs = tmp_path / "jobs.csv"
    with open(jobs, "w", newline="") as stream:
        writer = csv.DictWriter(stream, ["name", "audio", "seed"])
        writer.writeheader()
        writer.writerow({"name": "rain", "audio": str(raining), "seed": "3"})
    batch = world_run("batch", str(jobs), "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "batch"))
    assert batch.exit_code == 0, batch.output
    assert_world_networks(json.loads((tmp_path / "batch" / "rain" / "run.json").read_text()), worlds)


def test_the_api_and_the_demo_load_the_worlds_networks(worlds, monkeypatch, tmp_path):
    import threading

    from sgsim.demo import DemoEngine, build_editor
    from sgsim.demo.engine import VideoRequest
    from sgsim.editing.video_settings import DEFAULT_WINDOW
    from sgsim.editing import Editor

    monkeypatch.setenv(ROOT_VARIABLE, str(worlds.root.parent))
    editor = Editor.from_pretrained(world="shapes", device="cpu")
    assert editor.weight_files == {"generator": worlds.generator, "audio_encoder": worlds.encoder, "clip": worlds.clip}
    assert editor.audio_encoder.clip_model == worlds.clip_model
    with pytest.raises(Exception, match="leave out --generator"):
        Editor.from_pretrained("ffhq-256", world="shapes")
    engine = DemoEngine(build_editor(str(worlds.generator), worlds.encoder_name, worlds.encoder, str(worlds.clip), "cpu"),
                        tmp_path, {"generator": str(worlds.generator), "world": "shapes"})
    assert engine.settings.world == "shapes"

    class Asked(Exception):
        pass

    def spy(*args, **options):
        raise Asked(options.get("window"))

    monkeypatch.setattr(engine.editor, "video", spy)
    request = VideoRequest(sound=tmp_path / "any.wav", sound_name="any.wav", seed=3, fps=4, keyframe_every=0.5, steps=1)
    for defaults, window in (({"video": {"window": 1.5}}, 1.5), ({}, DEFAULT_WINDOW)):  # the world's own window, else sgsim's
        (worlds.root / DEFAULTS_FILE).write_text(json.dumps(defaults))
        try:
            with pytest.raises(Asked) as asked:
                engine.video(request, lambda *_: None, threading.Event())
        finally:
            (worlds.root / DEFAULTS_FILE).unlink()
        assert asked.value.args == (window,)


def test_a_photo_is_inverted_by_the_worlds_own_encoder_by_default(world_run, worlds, raining, tmp_path):
    from sgsim.outputs import write_png
    from sgsim.worlds.shapes import render_random
    from stylegan2 import load_generator
    from tests.sgsim.test_style_encoder_file import authors_checkpoint

    photo = tmp_path / "photo.png"
    write_png(photo, render_random(1, 5)[0])
    authors_checkpoint(worlds.style_encoder, load_generator(worlds.generator))  # what `sgsim world build` writes there
    try:
        inverted = world_run("invert", "--image", str(photo), "--device", "cpu", "--out", str(tmp_path / "inv"))
        edited = world_run("edit", "--audio", str(raining), "--image", str(photo), "--steps", "2", "--device", "cpu",
                           "--out", str(tmp_path / "edit"))
    finally:
        worlds.style_encoder.unlink()
    records = []
    for result, record in ((inverted, tmp_path / "inv" / "run.json"), (edited, tmp_path / "edit" / "run.json")):
        assert result.exit_code == 0, result.output
        assert "note: inversion: e4e (the world's own encoder for this generator" in result.output
        records.append(json.loads(record.read_text()))
    for inversion in (records[0], records[1]["source"]["inversion"]):
        assert inversion["method"] == "e4e" and inversion["encoder"] == str(worlds.style_encoder)
        assert inversion["method_reason"] == (f"the world's own encoder for this generator ({worlds.style_encoder}) is at "
                                              "hand: one forward pass instead of an optimisation")
        assert (inversion["steps"], inversion["refine_steps"]) == (0, 0)


@pytest.mark.parametrize("command", [
    ["edit", "--audio", "{raining}", "--seed", "1"], ["generate", "--seed", "1"], ["invert", "--image", "{raining}"],
    ["direction", "--audio", "{raining}", "--seeds", "0-1"], ["apply", "--direction", "{raining}", "--seed", "1"],
    ["video", "--audio", "{raining}", "--seed", "1"], ["batch", "{raining}"], ["compare-encoders", "{raining}"], ["demo"],
])
def test_an_unbuilt_world_is_one_line_and_writes_nothing(command, raining, tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path / "worlds"))
    monkeypatch.chdir(tmp_path)
    out = ["--out", str(tmp_path / ("out.mp4" if command[0] == "video" else "out"))] if command[0] != "demo" else []
    args = [part.format(raining=raining) for part in command] + out + ["--world", "shapes"]
    result = CliRunner().invoke(main, args, catch_exceptions=False, prog_name="sgsim")
    line = one_error_line(result)
    assert "the shapes world is not built" in line and "sgsim world build shapes --out" in line
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, named", [
    (["--generator", "ffhq-256"], "--generator"), (["--clip", "x.safetensors"], "--clip"),
    (["--encoder-checkpoint", "x.pth"], "--encoder-checkpoint"),
])
def test_a_network_named_with_a_world_is_one_line(world_run, raining, tmp_path, flags, named, one_error_line):
    result = world_run("edit", "--audio", str(raining), "--seed", "1", *flags, "--out", str(tmp_path / "out"))
    line = one_error_line(result)
    assert "--world shapes brings its own" in line and named in line
    assert not (tmp_path / "out").exists()


def test_an_unknown_world_is_one_line(world_run, raining, tmp_path, one_error_line):
    result = world_run("generate", "--seed", "1", "--out", str(tmp_path / "out"), world="moons")
    assert "unknown world 'moons'" in one_error_line(result)


def test_compare_encoders_scores_the_worlds_encoder_in_its_clip(world_run, worlds, shared_data, tmp_path, one_error_line):
    out = tmp_path / "report"
    result = world_run("compare-encoders", str(shared_data / "esc50-mini"), "--no-linear-probe", "--no-cache", "--workers", "0",
                       "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["world"] == "shapes"
    assert record["encoders"] == [{"name": worlds.encoder_name, "label": "shapes", "checkpoint": str(worlds.encoder), "clip": str(worlds.clip)}]
    refused = world_run("compare-encoders", str(shared_data / "esc50-mini"), "--clip", "x.safetensors", "--out", str(tmp_path / "other"))
    assert "leave out --clip" in one_error_line(refused) and not (tmp_path / "other").exists()
