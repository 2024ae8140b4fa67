"""The pure pieces of editing: layer-wise mixing, strength sweeps, loudness scale, latent sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgsim.editing.mixing import coarse_rows, mix_layers, sweep_strengths
from sgsim.editing.variables import free_rows
from sgsim.editing.presets import DEFAULT_PRESET, FACES, SCENES, EditPreset, choose_preset
from sgsim.editing.sources import as_w_plus
from sgsim.editing.targets import REFERENCE_DBFS, loudness_scale
from sgsim.errors import SgsimError


@pytest.mark.parametrize("num_ws, split", [(18, 9), (16, 8), (14, 7), (8, 4)])
def test_layer_split_is_the_papers_nine_of_eighteen_scaled(num_ws, split):
    assert coarse_rows(num_ws) == split


def test_mix_layers_takes_coarse_rows_from_sound_and_the_rest_from_text():
    sound = torch.zeros(2, 18, 4)
    text = torch.ones(2, 18, 4)
    mixed = mix_layers(sound, text)
    assert torch.equal(mixed[:, :9], sound[:, :9])
    assert torch.equal(mixed[:, 9:], text[:, 9:])


def test_strength_sweep_interpolates_and_extrapolates_along_the_edit():
    source = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    edited = source + torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(1))
    swept = sweep_strengths(source, edited, torch.tensor([[0.0, 0.5, 1.0, 2.0]] * 2))
    assert swept.shape == (2, 4, 6, 4)
    torch.testing.assert_close(swept[:, 0], source.expand(2, -1, -1))
    torch.testing.assert_close(swept[:, 2], edited)
    torch.testing.assert_close(swept[:, 1], (source + edited) / 2)
    distances = (swept - source).flatten(2).norm(dim=2)
    assert (distances.diff(dim=1) > 0).all()


def test_loudness_scale_doubles_every_ten_decibels_within_its_clamp():
    assert loudness_scale(REFERENCE_DBFS) == pytest.approx(1.0)
    assert loudness_scale(REFERENCE_DBFS - 10) == pytest.approx(0.5)
    assert loudness_scale(REFERENCE_DBFS + 10) == pytest.approx(2.0)
    assert loudness_scale(REFERENCE_DBFS + 40) == 2.0
    assert loudness_scale(REFERENCE_DBFS - 60) == 0.25
    assert loudness_scale(None) == 1.0


def test_w_and_w_plus_latents_of_every_accepted_shape():
    w = np.arange(5, dtype=np.float32)
    assert torch.equal(as_w_plus(w, 4, 5), torch.from_numpy(w).repeat(4, 1))
    assert torch.equal(as_w_plus(w[None], 4, 5), torch.from_numpy(w).repeat(4, 1))
    w_plus = torch.randn(1, 4, 5)
    assert torch.equal(as_w_plus(w_plus, 4, 5), w_plus[0])
    with pytest.raises(SgsimError, match=r"W\+ \[4, 5\].*\[3, 5\]"):
        as_w_plus(torch.zeros(3, 5), 4, 5)


def test_free_rows_are_checked_against_num_ws():
    assert free_rows(None, 4).tolist() == [0, 1, 2, 3]
    assert free_rows([3, 1, 1], 4).tolist() == [1, 3]
    for bad in ([4], [-1], []):
        with pytest.raises(SgsimError, match="0..3"):
            free_rows(bad, 4)


def test_presets_follow_the_generator_name_unless_one_is_asked_for(tmp_path):
    assert choose_preset(None, "ffhq") == FACES == EditPreset(lambda_latent=0.008, lambda_id=0.004)
    assert choose_preset(None, "landscape") == choose_preset(None, "wikiart") == SCENES == EditPreset(0.002, 0.0)
    assert choose_preset(None, tmp_path / "ffhq-finetuned.pkl") == DEFAULT_PRESET
    assert choose_preset(None, object()) == DEFAULT_PRESET
    assert choose_preset("ffhq", tmp_path / "g.pkl") == FACES
    assert choose_preset(EditPreset(1.0, 2.0), "ffhq") == EditPreset(1.0, 2.0)
    with pytest.raises(SgsimError, match="unknown preset 'faces'; choose one of ffhq, landscape, wikiart"):
        choose_preset("faces", "ffhq")


def test_the_editing_api_is_exported_lazily():
    import subprocess
    import sys

    import sgsim
    import sgsim.editing

    assert (sgsim.Editor, sgsim.Target, sgsim.EditResult) == (sgsim.editing.Editor, sgsim.editing.Target, sgsim.editing.EditResult)
    probe = "import sys, sgsim, sgsim.errors; print('sgsim.editing' in sys.modules, 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]
    with pytest.raises(AttributeError, match="no attribute 'Edtor'"):
        sgsim.Edtor


def test_the_package_names_resolve_to_their_modules_objects():
    import importlib

    import sgsim.editing

    assert sorted(sgsim.editing.__all__) == sorted(sgsim.editing._HOMES)
    for name in sgsim.editing.__all__:
        home = importlib.import_module(f"sgsim.editing.{sgsim.editing._HOMES[name]}")
        assert getattr(sgsim.editing, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        sgsim.editing.Nothing
