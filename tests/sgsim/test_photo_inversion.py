"""sgsim.photo_inversion and `sgsim invert --method`: one policy picks alignment, method and steps for a photo, and the
choice, its reason and the reconstruction's distances are printed and recorded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from checkpoints import entry
from checkpoints.cache import cached_path
from sgsim.cli import main
from sgsim.errors import SgsimError
from sgsim.inversion import W_STAGE
from sgsim.photo_inversion import (E4E, E4E_OPTIMISE, OPTIMISE, choose_inversion_method,
                                   encode_photo, invert_photo_with_plan, plan_photo_inversion)
from stylegan2 import load_generator
from tests.sgsim.test_style_encoder_file import _Payload, authors_checkpoint


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def G(tiny_generator_file):
    return load_generator(tiny_generator_file)


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory, G):
    return authors_checkpoint(tmp_path_factory.mktemp("encoder") / "tiny_e4e.pt", G)


@pytest.fixture
def photo(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_without_an_encoder_the_choice_is_optimisation_and_says_how_to_get_one(tiny_generator_file):
    assert choose_inversion_method("ffhq")[:1] == (OPTIMISE,)
    assert "sgsim weights download e4e-ffhq" in choose_inversion_method("ffhq")[1]
    method, reason, encoder = choose_inversion_method(tiny_generator_file)
    assert (method, encoder) == (OPTIMISE, None) and "no published encoder fits this generator" in reason


def test_a_cached_published_encoder_is_chosen_by_default():
    path = cached_path(entry("e4e-ffhq"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"the cache holds it")  # the choice looks for the file; reading it is the loader's job
    for generator in ("ffhq", "stylegan2-ffhq-config-f"):
        method, reason, encoder = choose_inversion_method(generator)
        assert (method, encoder) == (E4E, str(path)) and "e4e-ffhq" in reason


def test_asked_methods_are_kept_or_refused_with_the_way_out(tiny_generator_file, encoder_file):
    assert choose_inversion_method(tiny_generator_file, OPTIMISE, encoder_file)[0] == OPTIMISE
    assert choose_inversion_method(tiny_generator_file, E4E_OPTIMISE, encoder_file)[:3:2] == (E4E_OPTIMISE, str(encoder_file))
    assert choose_inversion_method(tiny_generator_file, None, encoder_file)[0] == E4E
    with pytest.raises(SgsimError, match="needs an e4e / pSp encoder.*sgsim weights download e4e-ffhq.*--method optimise"):
        choose_inversion_method("ffhq", E4E)
    with pytest.raises(SgsimError, match="no published encoder fits this generator; give one with --photo-encoder"):
        choose_inversion_method(tiny_generator_file, E4E_OPTIMISE)


def test_the_plan_sets_steps_by_method(tiny_generator_file, encoder_file):
    plan = lambda **given: plan_photo_inversion(tiny_generator_file, encoder=encoder_file, align=False, **given)
    assert (plan().method, plan().steps, plan().refine_steps) == (E4E, 0, 0)
    assert (plan(method=E4E_OPTIMISE).steps, plan(method=E4E_OPTIMISE).refine_steps) == (0, 300)
    assert plan(method=E4E_OPTIMISE, refine_steps=7).refine_steps == 7
    assert (plan(method=OPTIMISE).steps, plan(method=OPTIMISE).refine_steps) == (1000, 300)
    assert plan(method=OPTIMISE, steps=5).record()["steps"] == 5
    assert plan().align is False and plan_photo_inversion(tiny_generator_file).align is False  # not a face generator


def test_e4e_then_optimise_refines_from_the_encoder_code(G, encoder_file):
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    code = encode_photo(G, target, encoder_file)
    plan = plan_photo_inversion("unused", E4E_OPTIMISE, encoder_file, align=False, refine_steps=0)
    with pytest.warns(UserWarning, match="without LPIPS"):
        kept = invert_photo_with_plan(G, target, plan)
    assert torch.equal(kept.result.w_plus, code) and kept.result.losses == []
    stages = []
    with pytest.warns(UserWarning, match="without LPIPS"):
        refined = invert_photo_with_plan(G, target, plan_photo_inversion("unused", E4E_OPTIMISE, encoder_file, align=False,
                                                                         refine_steps=3),
                                         callback=lambda progress: stages.append(progress.stage))
    assert len(refined.result.losses) == 3 and W_STAGE not in stages
    assert not torch.equal(refined.result.w_plus, code)
    assert set(refined.distances) == {"pixel_mse"}


def test_invert_e4e_writes_the_outputs_and_records_the_choice(tmp_path, tiny_generator_file, encoder_file, photo, G):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["invert", "--image", str(photo), "--out", str(out), "--generator",
                                       str(tiny_generator_file), "--photo-encoder", str(encoder_file), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "inversion: e4e (the encoder given" in result.output and "reconstruction distance to the photo: pixel MSE" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["input.png", "latent.npz", "reconstruction.png", "run.json"]
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == E4E and "the encoder given" in record["method_reason"]
    assert (record["steps"], record["refine_steps"], record["final_loss"]) == (0, 0, None)
    assert set(record["reconstruction"]) == {"pixel_mse"} and "photo_encoder" in record["weights"]
    with Image.open(out / "input.png") as written:
        target = torch.from_numpy(np.asarray(written).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with np.load(out / "latent.npz") as stored:
        torch.testing.assert_close(torch.from_numpy(stored["w"]), encode_photo(G, target, encoder_file), atol=1e-5, rtol=0)


def test_invert_default_without_an_encoder_optimises_and_says_why(tmp_path, tiny_generator_file, photo):
    result = CliRunner().invoke(main, ["invert", "--image", str(photo), "--out", str(tmp_path / "run"), "--generator",
                                       str(tiny_generator_file), "--steps", "2", "--refine-steps", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["method"] == OPTIMISE and "no encoder at hand" in record["method_reason"]
    assert (record["steps"], record["refine_steps"]) == (2, 1) and record["final_loss"] > 0
    assert "inversion: optimise (no encoder at hand" in result.output and "without LPIPS" in result.output


def _hostile(path, G):
    torch.save({"state_dict": {}, "opts": _Payload(path.with_suffix(".ran")), "latent_avg": torch.zeros(8, 32)}, path)
    return path


def _truncated(path, G):
    whole = authors_checkpoint(path.with_suffix(".whole"), G)
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    return path


def _for_64_px(path, G):
    from stylegan2.networks import Generator

    G64 = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                    mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 512, "channel_max": 32})
    return authors_checkpoint(path, G64)


@pytest.mark.parametrize("make, message", [
    (_hostile, "nothing was executed"),
    (_truncated, "truncated or corrupt"),
    (_for_64_px, r"encodes for a 64 px generator.*chosen generator is 32 px"),
])
def test_bad_encoder_files_are_one_line_and_write_nothing(tmp_path, tiny_generator_file, photo, G, make, message,
                                                          one_error_line):
    import re

    bad = make(tmp_path / "bad.pt", G)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["invert", "--image", str(photo), "--out", str(out), "--generator",
                                       str(tiny_generator_file), "--photo-encoder", str(bad), "--method", "e4e+optimise",
                                       "--device", "cpu"])
    assert re.search(message, one_error_line(result))
    assert not out.exists() and not (tmp_path / "bad.ran").exists()
