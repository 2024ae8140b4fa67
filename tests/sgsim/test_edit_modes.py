"""The official script's modes: free generation from the mean latent, adaptive layer masking and a seed's truncation,
through Editor.edit and `sgsim edit`, checked against independent computations on the tiny generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sgsim.editing import MeanSource, SeedSource, Target
from sgsim.errors import SgsimError

STEPS = 2


@pytest.fixture(scope="module")
def raining(shared_data):
    return shared_data / "audio" / "raining.wav"


def test_free_generation_starts_at_w_avg_on_every_row_and_weighs_clip_alone(editor, raining):
    G = editor.generator
    expected = G.mapping.w_avg.detach().cpu()[None].expand(G.num_ws, -1)
    result = editor.edit(MeanSource(), Target(raining), steps=STEPS)
    assert torch.equal(result.source_latent, expected)
    assert result.settings["free"] is True and result.settings["source_type"] == "MeanSource"
    assert {name for name, weight in result.settings["weights"].items() if weight > 0} == {"clip"}
    assert set(result.losses) <= {"total", "clip"} | {name for name, weight in result.settings["weights"].items() if weight == 0}
    assert not torch.equal(result.edited_latents[0], expected)  # the CLIP term alone moves it


def test_free_setting_without_the_mean_source_is_refused(editor, raining):
    with pytest.raises(SgsimError, match="MeanSource"):
        editor.edit(0, Target(raining), steps=STEPS, free=True)


def test_adaptive_layer_masking_moves_the_latent_weight(editor, raining):
    plain = editor.loss_weights({"latent": 0.25}, None, None)
    moved = editor.loss_weights({"latent": 0.25}, None, None, adaptive_layer_masking=True)
    assert plain["latent"] == 0.25 and plain.get("adaptive_latent", 0.0) == 0.0
    assert moved["latent"] == 0.0 and moved["adaptive_latent"] == 0.25
    assert {name: w for name, w in moved.items() if name not in ("latent", "adaptive_latent")} == \
           {name: w for name, w in plain.items() if name not in ("latent", "adaptive_latent")}


@pytest.mark.parametrize("psi", [0.7, 0.3, 1.0])
def test_truncation_pulls_the_seeds_latent_toward_w_avg(editor, psi):
    G = editor.generator
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    with torch.no_grad():
        w = G.mapping(z, torch.zeros(1, 0), truncation_psi=1)[0]
    w_avg = G.mapping.w_avg.detach()
    expected = w_avg + psi * (w - w_avg)
    got = editor.source_latent(SeedSource(5), truncation=psi).cpu()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_edit_free_records_the_mean_start_and_the_clip_term_alone(run, raining, tmp_path, editor):
    out = tmp_path / "free"
    result = run("edit", "--audio", str(raining), "--free", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "run.json").read_text())
    assert report["settings"]["free"] is True and report["source"]["free"] is True
    assert {name for name, weight in report["settings"]["weights"].items() if weight > 0} == {"clip"}
    G = editor.generator
    np.testing.assert_array_equal(np.load(out / "latents.npz")["source"],
                                  G.mapping.w_avg.detach().cpu()[None].expand(G.num_ws, -1).numpy())


def test_edit_adaptive_layer_masking_is_recorded(run, raining, tmp_path):
    out = tmp_path / "masked"
    result = run("edit", "--audio", str(raining), "--seed", "1", "--adaptive-layer-masking", "--weight", "latent=0.02", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "run.json").read_text())
    assert report["settings"]["adaptive_layer_masking"] is True
    assert report["settings"]["weights"]["latent"] == 0 and report["settings"]["weights"]["adaptive_latent"] == 0.02


def test_edit_truncation_changes_the_source_latent_as_recorded(run, raining, tmp_path, editor):
    out = tmp_path / "psi"
    result = run("edit", "--audio", str(raining), "--seed", "2", "--truncation", "0.4", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "run.json").read_text())
    assert report["settings"]["truncation"] == 0.4 and report["source"]["truncation"] == 0.4
    np.testing.assert_allclose(np.load(out / "latents.npz")["source"], editor.source_latent(SeedSource(2), truncation=0.4).cpu().numpy(),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("flags, expected", [
    (["--free", "--seed", "1"], "exactly one source"),
    (["--free", "--latent", "x.npz"], "exactly one source"),
    (["--free", "--adaptive-layer-masking"], "--free turns off"),
    (["--seed", "1", "--truncation", "11"], "not in the range"),
])
def test_bad_combinations_are_one_line_and_write_nothing(run, raining, tmp_path, flags, expected, one_error_line):
    out = tmp_path / "out"
    result = run("edit", "--audio", str(raining), *flags, "--out", str(out))
    assert expected in one_error_line(result)
    assert not out.exists()
