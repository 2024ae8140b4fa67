"""`sgsim evaluate` on edits of the shapes world: the world's judge reads each edited picture against its source toward
what the target's words name; other runs get no judge columns."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main
from sgsim.evaluation.edits import JUDGED, evaluate_edits, is_world_run
from sgsim.worlds import ROOT_VARIABLE
from sgsim.worlds.shapes import COLOURS, SHAPES, draw_scenes, render


def write_render(path, colour: str, shape: str, centre: tuple[float, float]) -> None:
    """A render of one shape with known colour, shape and centre (pixels), as an 8-bit PNG."""
    scene = draw_scenes(1, 0, colour=torch.tensor(COLOURS.index(colour)), shape=torch.tensor(SHAPES.index(shape)))
    scene.radius, scene.centre, scene.rotation = torch.tensor([6.0]), torch.tensor([centre]), torch.zeros(1)
    pixels = ((render(scene)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    Image.fromarray(pixels).save(path)


@pytest.fixture
def rendered_run(worlds, tmp_path):
    """An edit folder of the world toward blue.flac whose pictures are renders: source a red circle at the centre; strength
    1 a blue circle there (reached, kept), 2 the red circle unchanged (not reached), 0.5 a blue circle 8 px off (moved)."""
    folder = tmp_path / "run"
    folder.mkdir()
    write_render(folder / "source.png", "red", "circle", (16, 16))
    write_render(folder / "blue_s1.png", "blue", "circle", (16, 16))
    write_render(folder / "blue_s2.png", "red", "circle", (16, 16))
    write_render(folder / "blue_s0.5.png", "blue", "circle", (24, 16))
    record = {"sgsim": "test", "command": "edit", "world": "shapes", "encoder": worlds.encoder_name, "encoder_checkpoint": str(worlds.encoder),
              "clip": str(worlds.clip), "targets": [{"audio": str(worlds.root / "audio" / "blue.flac"), "text": None}]}
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_the_judge_reads_rendered_edits_as_their_scenes_say(rendered_run):
    report = evaluate_edits([rendered_run], lpips_weights=None, progress=False)
    rows = {row["strength"]: row for row in report.rows}
    # aim: colour blue (from the sound's stem); its shape is to be kept
    expected = {1.0: dict(reached=1, kept_shape=1, kept_position=1, success=1),
                2.0: dict(reached=0, kept_shape=1, kept_position=1, success=0),
                0.5: dict(reached=1, kept_shape=1, kept_position=0, success=0)}
    for strength, verdicts in expected.items():
        assert {name: rows[strength][name] for name in verdicts} == verdicts, strength
        assert math.isnan(rows[strength]["kept_colour"])  # the aim names the colour: nothing to keep
    assert [entry["success"] for entry in report.summary] == [0.0, 1.0, 0.0]  # strengths 0.5, 1, 2


def test_other_runs_get_no_judge_columns(rendered_run, tiny_generator_file):
    record = json.loads((rendered_run / "run.json").read_text())
    del record["world"]
    (rendered_run / "run.json").write_text(json.dumps(record))
    report = evaluate_edits([rendered_run], lpips_weights=None, progress=False)
    assert not any(name in row for row in report.rows + report.summary for name in JUDGED)
    assert not is_world_run({"generator": str(tiny_generator_file)})


def test_a_generator_file_naming_the_worlds_training_set_makes_a_world_run(tiny_generator_file, tmp_path):
    from sgsim.worlds.build import DATASET
    from stylegan2 import load_generator, save_generator

    G = load_generator(tiny_generator_file)
    G.metadata = {**G.metadata, "dataset": DATASET}
    save_generator(G, tmp_path / "world.safetensors")
    assert is_world_run({"generator": str(tmp_path / "world.safetensors")})
    assert is_world_run({"weights": {"generator": {"path": str(tmp_path / "world.safetensors")}}})


def test_edit_on_the_world_then_evaluate_shows_the_judge(worlds, monkeypatch, tmp_path):
    monkeypatch.setenv(ROOT_VARIABLE, str(worlds.root.parent))
    runner = CliRunner()
    edited = runner.invoke(main, ["edit", "--world", "shapes", "--audio", str(worlds.root / "audio" / "triangle.flac"),
                                  "--seed", "1", "--steps", "2", "--strength", "0.5,1", "--device", "cpu",
                                  "--out", str(tmp_path / "edit")], catch_exceptions=False)
    assert edited.exit_code == 0, edited.output
    measured = runner.invoke(main, ["evaluate", str(tmp_path / "edit"), "--out", str(tmp_path / "measured"), "--device", "cpu"],
                                   catch_exceptions=False)
    assert measured.exit_code == 0, measured.output
    with open(tmp_path / "measured" / "edits.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 and all(row[name] in ("0.0", "1.0") for row in rows for name in ("reached", "kept_colour", "kept_position", "success"))
    assert all(row["kept_shape"] == "nan" for row in rows)  # the aim (triangle) names the shape: nothing to keep
    header = (tmp_path / "measured" / "report.md").read_text().split("| guide |", 1)[1].split("\n", 1)[0]
    assert all(name in header for name in ("reached", "kept_colour", "kept_position", "success"))
    assert np.isfinite(json.loads((tmp_path / "measured" / "report.json").read_text())["summary"][0]["success"])


def test_an_edit_saved_through_the_python_api_names_its_networks_for_evaluate(worlds, monkeypatch, tmp_path):
    from sgsim.editing import Editor, Target

    monkeypatch.setenv(ROOT_VARIABLE, str(worlds.root.parent))
    editor = Editor.from_pretrained(world="shapes", device="cpu")
    editor.edit(1, [Target(audio=worlds.root / "audio" / "red.flac")], steps=2, strengths=[1.0]).save(tmp_path / "edit")
    record = json.loads((tmp_path / "edit" / "run.json").read_text())
    assert record["encoder"] == worlds.encoder_name
    assert record["weights"]["audio_encoder"]["path"] == str(worlds.encoder.resolve())
    report = evaluate_edits([tmp_path / "edit"], device="cpu", progress=False)  # the world's encoder, not the default one
    assert len(report.rows) == 1 and math.isfinite(report.rows[0]["target_similarity"]) and report.rows[0]["reached"] in (0.0, 1.0)
