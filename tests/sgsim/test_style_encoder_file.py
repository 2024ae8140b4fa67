"""sgsim.style_encoder_file: e4e / pSp checkpoints in the authors' layout load safely and are checked against the
generator; hostile, truncated and mismatched files are one clear error and run nothing."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sgsim.errors import NetworkFileError
from sgsim.style_encoder import E4E, HEADS, PSP
from sgsim.style_encoder_file import GeneratorMismatchWarning, read_style_encoder
from stylegan2 import load_generator
from stylegan2.loading.rosinality import rosinality_state_dict
from tests.sgsim.test_style_encoder import TINY, authors_state_dict


def authors_checkpoint(path: Path, G, head: str = E4E, seed: int = 5, **options) -> Path:
    """A file as encoder4editing's Coach saves it: state_dict (encoder.*, decoder.* of the rosinality generator),
    latent_avg and opts = vars(the training options). The encoder is TINY with as many rows as G has."""
    weights = authors_state_dict(replace(TINY, num_ws=G.num_ws), seed)
    latent_avg = weights.pop("latent_avg")
    decoder = {f"decoder.{key}": value for key, value in rosinality_state_dict(G.state_dict()).items()}
    opts = {"encoder_type": HEADS[head], "stylegan_size": G.img_resolution, "start_from_latent_avg": True,
            "checkpoint_path": None, "lpips_lambda": 0.8, "progressive_steps": [0, 20000], **options}
    torch.save({"state_dict": {**weights, **decoder}, "latent_avg": latent_avg, "opts": opts}, path)
    return path


@pytest.fixture(scope="module")
def G(tiny_generator_file):
    return load_generator(tiny_generator_file)


@pytest.fixture(scope="module")
def e4e_file(tmp_path_factory, G) -> Path:
    return authors_checkpoint(tmp_path_factory.mktemp("e4e") / "e4e_tiny_encode.pt", G)


@pytest.mark.parametrize("head", [E4E, PSP])
def test_authors_checkpoint_loads_and_fits_its_generator(tmp_path, G, head):
    path = authors_checkpoint(tmp_path / "encoder.pt", G, head)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the decoder is the generator: no mismatch warning
        loaded = read_style_encoder(path, G)
    weights = authors_state_dict(TINY, 5)
    assert loaded.head == head and loaded.resolution == 32 and loaded.encoder.config == TINY.__class__(**{**TINY.__dict__, "head": head})
    assert all(torch.equal(loaded.encoder.state_dict()[key[len("encoder."):]], value)
               for key, value in weights.items() if key.startswith("encoder."))
    torch.testing.assert_close(loaded.latent_avg, weights["latent_avg"], rtol=0, atol=0)
    assert loaded.options["progressive_steps"] == [0, 20000] and not loaded.encoder.training


def test_other_decoder_weights_warn(tmp_path, G, tiny_generator_file):
    other = load_generator(tiny_generator_file)
    with torch.no_grad():
        other.synthesis.b4.const.add_(1.0)
    path = authors_checkpoint(tmp_path / "other.pt", other)
    with pytest.warns(GeneratorMismatchWarning, match="other generator weights.*e4e\\+optimise"):
        read_style_encoder(path, G)


def test_encoder_for_another_resolution_is_refused(tmp_path, e4e_file):
    from stylegan2.networks import Generator

    G64 = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                    mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 512, "channel_max": 32})
    with pytest.raises(NetworkFileError, match=r"encodes for a 32 px generator with W\+ 8x32.*64 px.*--method optimise"):
        read_style_encoder(e4e_file, G64)


def test_options_that_contradict_the_decoder_are_refused(tmp_path, G):
    path = authors_checkpoint(tmp_path / "lying.pt", G, stylegan_size=1024)
    with pytest.raises(NetworkFileError, match="options say 1024 px but the decoder is 32 px"):
        read_style_encoder(path, G)


def test_truncated_file_is_one_clear_error(tmp_path, e4e_file, G):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(e4e_file.read_bytes()[: e4e_file.stat().st_size // 2])
    with pytest.raises(NetworkFileError, match="truncated or corrupt"):
        read_style_encoder(cut, G)


class _Payload:
    """Unpickling this runs os.system: what a hostile checkpoint would do under plain torch.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_file_runs_nothing(tmp_path, G):
    marker = tmp_path / "executed"
    path = tmp_path / "hostile.pt"
    torch.save({"state_dict": {}, "opts": _Payload(marker), "latent_avg": torch.zeros(8, 32)}, path)
    with pytest.raises(NetworkFileError, match="weights-only loader.*nothing was executed"):
        read_style_encoder(path, G)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    ({"g_ema": {}}, "holds g_ema; expected an e4e or pSp checkpoint"),
    ({"state_dict": {"encoder.x": torch.zeros(1)}}, "lacks the decoder weights"),
    ({"state_dict": {"discriminator.w": torch.zeros(1)}}, "not an encoder.\\* or decoder.\\* tensor"),
    ([1, 2], "holds list"),
])
def test_foreign_files_are_explained(tmp_path, G, content, message):
    torch.save(content, tmp_path / "foreign.pt")
    with pytest.raises(NetworkFileError, match=message):
        read_style_encoder(tmp_path / "foreign.pt", G)


def test_unsupported_encoder_type_is_refused(tmp_path, G):
    path = authors_checkpoint(tmp_path / "w.pt", G, encoder_type="SingleStyleCodeEncoder")
    with pytest.raises(NetworkFileError, match="encoder_type 'SingleStyleCodeEncoder' is not supported"):
        read_style_encoder(path, G)
