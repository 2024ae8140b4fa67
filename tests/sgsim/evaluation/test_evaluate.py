"""`sgsim evaluate`: each metric of an edited image against an independent computation, on real edit folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main

def pixels(path: Path) -> torch.Tensor:
    """A PNG as [1, 3, H, W] in [-1, 1], read here with PIL (not through sgsim)."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 127.5 - 1


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten().numpy(), b.double().flatten().numpy()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def runs(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space, shared_data, tmp_path_factory) -> Path:
    """Two `sgsim edit` runs under one folder: a sound at strengths 0.5 and 1, and a text alone."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--seed", "4", "--generator", str(tiny_generator_file), "--encoder-checkpoint", str(encoder_checkpoint_file),
              "--device", "cpu", "--steps", "3"]
    for name, extra in (("sound", ["--audio", str(shared_data / "audio" / "raining.wav"), "--strength", "0.5,1"]),
                        ("text", ["--text", "a snowy mountain"])):
        result = CliRunner().invoke(main, ["edit", *extra, "--out", str(root / name), *common], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def identity_and_lpips():
    """A small ArcFace and an LPIPS network with seeded weights, standing in for the cached ones."""
    from sgsim.identity import ArcFace, IrSeConfig
    from sgsim.lpips import LpipsDistance

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        arcface = ArcFace(IrSeConfig(stem_channels=8, stages=((8, 1), (16, 2), (16, 1), (32, 1)), se_reduction=4, embedding_dim=16)).eval()
        lpips = LpipsDistance().eval()
    return arcface, lpips


@pytest.fixture
def stand_ins(monkeypatch, identity_and_lpips):
    import sgsim.evaluation.edits as edits

    arcface, lpips = identity_and_lpips
    monkeypatch.setattr(edits, "_load", lambda kind, weights, device: arcface if kind == "identity" else lpips)
    return identity_and_lpips


def test_every_metric_matches_an_independent_computation(runs, stand_ins, tmp_path, encoder_checkpoint_file, tiny_clip_space):
    from sgsim import components

    arcface, lpips = stand_ins
    result = CliRunner().invoke(main, ["evaluate", str(runs), "--out", str(tmp_path / "report"), "--identity", "on",
                                       "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "report" / "report.json").read_text())["edits"]
    assert sorted((Path(r["folder"]).name, r["image"]) for r in rows) == [
        ("sound", "raining_s0.5.png"), ("sound", "raining_s1.png"), ("text", "a_snowy_mountain_s1.png")]
    encoder = components.load_audio_encoder("sgsim-resnet18", encoder_checkpoint_file).component
    clip = components.load_clip_for(encoder).component
    neutral = clip.encode_text(["a photo"])[0]
    for row in rows:
        folder = Path(row["folder"])
        edited, source = pixels(folder / row["image"]), pixels(folder / "source.png")
        with torch.no_grad():
            image, start = clip.encode_image(edited)[0], clip.encode_image(source)[0]
            if row["guide"] == "sound":
                goal = encoder.encode(torch.from_numpy(_window(encoder)).float()[None], encoder.sample_rate)[0]
                assert row["target_similarity"] == pytest.approx(cosine(image, goal), abs=1e-5)
                assert row["target_gain"] == pytest.approx(cosine(image, goal) - cosine(start, goal), abs=1e-5)
                assert row["text_similarity"] is None
            else:
                goal = clip.encode_text(["a snowy mountain"])[0]
                assert row["text_similarity"] == pytest.approx(cosine(image, goal), abs=1e-5)
                assert row["target_similarity"] is None
            assert row["direction_similarity"] == pytest.approx(cosine(image - start, goal - neutral), abs=1e-5)
            assert row["identity_similarity"] == pytest.approx(cosine(arcface.embed(edited), arcface.embed(source)), abs=1e-5)
            assert row["lpips"] == pytest.approx(float(lpips(edited, source)), rel=1e-4, abs=1e-6)
        latents = np.load(folder / "latents.npz")
        strengths = list(json.loads((folder / "run.json").read_text())["settings"]["strengths"])
        edited_w = latents["swept"][0, strengths.index(row["strength"])]
        assert row["latent_distance"] == pytest.approx(float(np.square(edited_w.astype(np.float64) - latents["source"]).sum()), rel=1e-9)
    low, high = (r for r in rows if r["guide"] == "sound")
    assert low["latent_distance"] < high["latent_distance"]  # strength 0.5 moves a quarter as far as strength 1
    assert low["latent_distance"] == pytest.approx(high["latent_distance"] / 4, rel=1e-4)


def _window(encoder) -> np.ndarray:
    """The part of raining.wav an encoder embeds, read independently of sgsim's target code."""
    from sgsim.audio import load_centred_window

    return load_centred_window(Path(__file__).resolve().parents[2] / "data" / "audio" / "raining.wav",
                               encoder.sample_rate, encoder.mono, encoder.input_seconds)


def test_each_target_is_embedded_once_for_every_strength_and_folder_of_it(runs, stand_ins, tmp_path, monkeypatch,
                                                                          encoder_checkpoint_file, tiny_clip_space):
    import shutil

    import sgsim.editing.targets as targets
    from sgsim import components
    from sgsim.evaluation.edits import evaluate_edits

    shutil.copytree(runs / "sound", tmp_path / "sound-again")  # a second folder of the same sound, strengths 0.5 and 1
    embedded = []
    real = targets.embed_target
    monkeypatch.setattr(targets, "embed_target", lambda target, *networks: embedded.append(target) or real(target, *networks))
    rows = evaluate_edits([runs, tmp_path / "sound-again"], identity="off", progress=False).rows
    assert len(rows) == 5
    assert sorted((Path(t.audio).name if t.audio else "", t.text or "") for t in embedded) == [("", "a snowy mountain"), ("raining.wav", "")]
    encoder = components.load_audio_encoder("sgsim-resnet18", encoder_checkpoint_file).component
    clip = components.load_clip_for(encoder).component
    with torch.no_grad():
        goal = encoder.encode(torch.from_numpy(_window(encoder)).float()[None], encoder.sample_rate)[0]
        for row in (r for r in rows if r["guide"] == "sound"):
            image = clip.encode_image(pixels(Path(row["folder"]) / row["image"]))[0]
            assert row["target_similarity"] == pytest.approx(cosine(image, goal), abs=1e-5)


def test_the_summary_is_the_mean_and_95_percent_half_width_per_guide_and_strength(runs, stand_ins, tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(runs / "sound"), str(runs / "text"), "--out", str(tmp_path / "r"),
                                       "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {(s["guide"], s["strength"], s["edits"]) for s in report["summary"]} == {("sound", 0.5, 1), ("sound", 1.0, 1), ("text", 1.0, 1)}
    for entry in report["summary"]:
        members = [r for r in report["edits"] if (r["guide"], r["strength"]) == (entry["guide"], entry["strength"])]
        assert entry["lpips"] == pytest.approx(np.mean([m["lpips"] for m in members]))
        assert entry["lpips_ci95"] is None  # one edit: no spread to speak of
        assert entry["identity_similarity"] is None  # auto: the tiny generator is no face generator
    with open(tmp_path / "r" / "summary.csv", newline="") as stream:
        assert len(list(csv.DictReader(stream))) == 3
    assert Image.open(tmp_path / "r" / "tradeoff.png").format == "PNG"
    assert "| guide | encoder | strength | edits |" in result.output


def test_half_width_uses_the_standard_error():
    from sgsim.evaluation.edits import METRICS, summarise

    rows = [{"guide": "sound", "encoder": "e", "strength": 1.0, **{m: math.nan for m in METRICS}, "lpips": v} for v in (0.1, 0.2, 0.6)]
    entry = summarise(rows)[0]
    assert entry["lpips"] == pytest.approx(0.3)
    assert entry["lpips_ci95"] == pytest.approx(1.96 * np.std([0.1, 0.2, 0.6], ddof=1) / math.sqrt(3))


def test_a_folder_that_is_no_sgsim_run_is_one_line_before_any_network_loads(tmp_path, one_error_line, monkeypatch):
    import sgsim.components

    monkeypatch.setattr(sgsim.components, "load_audio_encoder", lambda *a, **k: pytest.fail("a network was loaded"))
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photos" / "source.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photos" / "rain_s1.png")
    (tmp_path / "photos" / "run.json").write_text('{"not": "sgsim"}')
    for folder in (tmp_path / "photos", tmp_path / "missing"):
        result = CliRunner().invoke(main, ["evaluate", str(folder), "--out", str(tmp_path / "out")])
        assert "is not an sgsim run" in one_error_line(result)
        assert not (tmp_path / "out").exists()
