"""`sgsim reproduce`: job files read and checked, every missing file named before any work, and a reduced job run end
to end on the tiny networks (its grid, its edit folders and their measurements)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main
from sgsim.errors import SgsimError
from sgsim.evaluation.reproduce import JOBS_DIR, needed_weights, read_job


def test_the_paper_job_names_real_sounds_and_known_networks():
    job = read_job(JOBS_DIR / "paper.json")
    assert [e.name for e in job.experiments] == ["landscape", "ffhq", "wikiart", "encoders", "identity-ablation", "latent-sweep"]
    assert len(job.experiments[0].sounds) == 8 and all(s.is_file() for e in job.experiments for s in e.sounds)
    needed = needed_weights(job)
    assert {"landscape", "ffhq", "wikiart", "sgsim-resnet18", "audioclip-full", "wav2clip", "clip-vit-b-32", "arcface-ir-se50"} <= set(needed)
    ablation = next(e for e in job.experiments if e.name == "identity-ablation")
    assert [v.settings["weights"]["id"] for v in ablation.variants] == [0.004, 0.0]
    assert all(v.settings["steps"] == 300 for v in ablation.variants)  # the experiment's settings reach every variant


def test_every_missing_weights_file_and_dataset_is_named_at_once(tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["reproduce", "paper", "--out", str(tmp_path / "out"), "--skip-tables"])
    line = one_error_line(result)
    for name in ("landscape", "ffhq", "wikiart", "audioclip-full", "wav2clip", "arcface-ir-se50"):
        assert name in line
    assert "sgsim weights download" in line and not (tmp_path / "out").exists()
    result = CliRunner().invoke(main, ["reproduce", "paper", "--out", str(tmp_path / "out")])
    assert "--dataset esc50=FOLDER" in one_error_line(result)


@pytest.mark.parametrize("change, message", [
    ({"experiments": [{"name": "x", "sounds": ["nope.wav"], "seeds": [0], "generator": "g"}]}, "sound .* not found"),
    ({"experiments": [{"name": "x", "sounds": [], "seeds": [], "generator": "g"}]}, "'seeds' must be"),
    ({"experiments": [{"name": "x", "sounds": [], "seeds": [0], "generator": "g", "settings": {"rm": 1}}]}, "unknown setting 'rm'"),
    ({"experiments": "all"}, "'experiments' must be list"),
])
def test_a_bad_job_file_is_one_line(tmp_path, change, message):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": "bad", **change}))
    with pytest.raises(SgsimError, match=message):
        read_job(path)
    path.write_text("[" * 100000)
    with pytest.raises(SgsimError, match="not a readable job file"):
        read_job(path)


def test_a_reduced_job_runs_end_to_end(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space, shared_data, tmp_path):
    shutil.copy(shared_data / "audio" / "fire.wav", tmp_path / "fire.wav")
    job = {"name": "tiny", "experiments": [{
        "name": "ablation", "title": "latent weight", "generator": str(tiny_generator_file),
        "encoder_checkpoint": str(encoder_checkpoint_file), "sounds": ["fire.wav"], "seeds": [1, 2],
        "settings": {"steps": 2, "strengths": [0.5, 1]},
        "variants": [{"label": "latent 0", "settings": {"weights": {"latent": 0.0}}},
                     {"label": "latent 1", "settings": {"weights": {"latent": 1.0}}}]}]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["reproduce", str(tmp_path / "job.json"), "--out", str(out), "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for variant, weight in (("latent_0", 0.0), ("latent_1", 1.0)):
        for seed in (1, 2):
            record = json.loads((out / "ablation" / variant / f"seed{seed:04d}" / "run.json").read_text())
            assert record["settings"]["weights"]["latent"] == weight and record["source"] == {"seed": seed}
        measured = json.loads((out / "ablation" / variant / "measured" / "report.json").read_text())
        assert len(measured["edits"]) == 4  # 2 seeds x 2 strengths
    with Image.open(out / "ablation" / "grid.png") as grid:
        assert grid.width > grid.height / 2  # 2 rows (seeds) of 3 tiles (source and two variants)
    report = (out / "report.md").read_text()
    assert "## latent weight" in report and "### latent 0" in report and "### latent 1" in report
    assert json.loads((out / "run.json").read_text())["command"] == "reproduce"


def test_the_world_job_takes_its_networks_sounds_and_speech_from_the_world(worlds, monkeypatch):
    monkeypatch.setenv("SGSIM_WORLDS", str(worlds.root.parent))
    job = read_job(JOBS_DIR / "world-shapes.json")
    assert [e.name for e in job.experiments] == ["words", "latent-sweep"] and job.world == "shapes"
    assert [s.stem for s in job.experiments[0].sounds] == ["red", "green", "blue", "yellow", "circle", "square", "triangle"]
    assert all(s.parent == worlds.root / "audio" for e in job.experiments for s in e.sounds)
    sweep = job.experiments[1].variants
    assert [v.settings["weights"]["latent"] for v in sweep] == [0.0, 0.002, 0.008, 0.03]
    assert {(v.generator, v.encoder, v.encoder_checkpoint, v.clip) for v in sweep} == {
        (str(worlds.generator), worlds.encoder_name, str(worlds.encoder), str(worlds.clip))}
    assert job.tables[0].files == {"speech/test.csv": worlds.root / "speech" / "test.csv"}


def test_a_world_job_without_its_world_is_one_line_naming_the_build(tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv("SGSIM_WORLDS", str(tmp_path / "worlds"))
    result = CliRunner().invoke(main, ["reproduce", "world-shapes", "--out", str(tmp_path / "out")])
    assert "sgsim world build shapes" in one_error_line(result) and not (tmp_path / "out").exists()


def test_a_reduced_world_job_runs_end_to_end_with_the_judge(worlds, monkeypatch, tmp_path):
    monkeypatch.setenv("SGSIM_WORLDS", str(worlds.root.parent))
    job = json.loads((JOBS_DIR / "world-shapes.json").read_text())
    for experiment in job["experiments"]:
        experiment["seeds"], experiment["sounds"] = [1], experiment["sounds"][:2]
    job["experiments"][1]["variants"] = job["experiments"][1]["variants"][::3]  # latent 0 and 0.03
    (tmp_path / "job.json").write_text(json.dumps(job))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["reproduce", str(tmp_path / "job.json"), "--out", str(out), "--steps", "2", "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "encoders" / "encoders.md").is_file()
    for experiment, variants in (("words", ["words"]), ("latent-sweep", ["latent_0", "latent_0.03"])):
        with Image.open(out / experiment / "grid.png") as grid:
            assert grid.height > 0
        for variant in variants:
            measured = json.loads((out / experiment / variant / "measured" / "report.json").read_text())
            assert len(measured["edits"]) == 2 and all(row["success"] in (0.0, 1.0) for row in measured["edits"])
    report = (out / "report.md").read_text()
    assert "## encoders" in report and "](words/grid.png)" in report and "### latent 0.03" in report
    assert "success" in report and "reached" in report
    assert "s in total" in report
