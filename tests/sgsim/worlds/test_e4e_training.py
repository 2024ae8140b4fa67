"""sgsim.worlds.e4e_training: a world's photo encoder learns, resumes to the run it would have made, refuses another
generator's state, and its file is an e4e checkpoint that the published encoders' loader reads and fits to G."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from sgsim.errors import SgsimError
from sgsim.style_encoder import E4E
from sgsim.style_encoder_file import read_style_encoder
from sgsim.worlds.e4e_training import E4eConfig, E4eTrainer
from sgsim.worlds.shapes import render_random
from stylegan2 import load_generator

TOY = E4eConfig(steps=6, batch_size=2, stem_channels=8, stages=((8, 1), (12, 1), (16, 1)), checkpoint_every=100)


def photos(count: int, seed: int) -> torch.Tensor:
    return render_random(count, seed)[0]


@pytest.fixture(scope="module")
def G(tiny_generator_file):
    return load_generator(tiny_generator_file)


def test_the_loss_falls(G, tmp_path):
    trainer = E4eTrainer(E4eConfig(**{**TOY.__dict__, "steps": 20, "batch_size": 4}), G, photos, tmp_path / "state.pt")
    z, fixed = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(3)), photos(8, 11)  # no step draws these
    with torch.no_grad():
        before = trainer.losses(z, fixed)["loss"]
    trainer.run().train()  # batch statistics, as before
    with torch.no_grad():
        after = trainer.losses(z, fixed)["loss"]
    assert after < 0.7 * before, (float(before), float(after))


def test_a_resumed_run_repeats_an_uninterrupted_one(G, tmp_path):
    whole = E4eTrainer(TOY, G, photos, tmp_path / "whole.pt").run()
    E4eTrainer(TOY, G, photos, tmp_path / "parts.pt").run(max_steps=3)  # killed after step 3
    resumed = E4eTrainer(TOY, G, photos, tmp_path / "parts.pt")
    assert resumed.resume() and resumed.step == 3
    parts = resumed.run()
    for key, value in whole.state_dict().items():
        assert torch.equal(value, parts.state_dict()[key]), key


def test_a_state_of_another_generator_is_refused(G, tmp_path):
    E4eTrainer(TOY, G, photos, tmp_path / "state.pt").run(max_steps=1)
    other = changed_copy(G)
    with pytest.raises(SgsimError, match="generator_sha256"):
        E4eTrainer(TOY, other, photos, tmp_path / "state.pt").resume()


def changed_copy(G):
    """A copy of G with one weight changed."""
    other = copy.deepcopy(G)
    with torch.no_grad():
        other.synthesis.b4.const.add_(0.5)
    return other


def test_the_file_loads_through_the_published_encoders_loader_and_fits_g(G, tmp_path):
    trainer = E4eTrainer(TOY, G, photos, tmp_path / "state.pt")
    encoder = trainer.run(max_steps=2)
    trainer.write(tmp_path / "style_encoder.pt", {"sgsim_world": "shapes"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its decoder is G's weights: no mismatch warning
        loaded = read_style_encoder(tmp_path / "style_encoder.pt", G)
    assert loaded.head == E4E and loaded.resolution == G.img_resolution and loaded.encoder.config == encoder.config
    assert loaded.options["sgsim_world"] == "shapes" and loaded.options["sgsim_training"]["steps"] == TOY.steps
    rounded = copy.deepcopy(encoder)  # the weights as stored: float16, read back as float32
    rounded.load_state_dict({key: value.half().float() if value.is_floating_point() else value
                             for key, value in encoder.state_dict().items()})
    images = photos(2, 9)
    with torch.no_grad():
        expected = rounded(images) + trainer.latent_avg
        torch.testing.assert_close(loaded.encoder.codes(images, loaded.latent_avg), expected, rtol=0, atol=0)
    with pytest.warns(UserWarning, match="other generator weights"):
        read_style_encoder(tmp_path / "style_encoder.pt", changed_copy(G))
