"""sgsim.style_encoder: e4e and pSp encoders give the authors' W+ codes, on the ArcFace IR-SE50 blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgsim.identity import ArcFace, IrSeConfig
from sgsim.style_encoder import E4E, PSP, StyleEncoder, StyleEncoderConfig
from tests.conftest import TEST_DATA, seeded_state_dict

GOLDEN = TEST_DATA / "style_encoder" / "encoder4editing_seeded_ffhq.npz"
POOL = 4099  # seeded_state_dict's pool: each tensor repeats its key's first 4099 draws (README in the data folder)
SEEDS = {E4E: 28, PSP: 29}
# A narrow encoder with the FFHQ structure (4 stages, 8 W+ rows), for quick checks.
TINY = StyleEncoderConfig(num_ws=8, w_dim=32, input_size=64,
                          backbone=IrSeConfig(stem_channels=8, stages=((8, 1), (12, 1), (16, 2), (24, 1)), se_reduction=4))
# Float32 error model for the FFHQ-size parity: each code is the float32 rounding of a float64-exact value, and
# the whole network's rounding error is what a float64 run of the same weights shows: 1.2e-7 at most (codes up to
# 0.54 in magnitude). Two CPUs' kernels (oneDNN / MKL blockings) each err by about that much, so they differ by
# ~2.4e-7; the absolute 1e-5 keeps a 40x margin and needs no relative term.
ATOL = 1e-5


def unit_batchnorm_gains(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BatchNorm weights (1-d weights with a running_var beside them) set to 1, so random features stay alive."""
    return {key: torch.ones_like(value) if key.endswith(".weight") and key[:-6] + "running_var" in weights else value
            for key, value in weights.items()}


def authors_state_dict(config: StyleEncoderConfig, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights under the authors' checkpoint keys (encoder.*) and their latent_avg, built without init cost."""
    with torch.device("meta"):
        template = {f"encoder.{key}": value for key, value in StyleEncoder(config).state_dict().items()}
    template = {key: torch.zeros(value.shape, dtype=value.dtype) if not value.is_floating_point() else value
                for key, value in template.items()}
    template["latent_avg"] = torch.empty(config.num_ws, config.w_dim)
    return unit_batchnorm_gains(seeded_state_dict(template, seed, pool=POOL))


def seeded_encoder(config: StyleEncoderConfig, seed: int) -> tuple[StyleEncoder, torch.Tensor]:
    weights = authors_state_dict(config, seed)
    with torch.device("meta"):
        encoder = StyleEncoder(config)
    encoder.load_state_dict({key[len("encoder."):]: value for key, value in weights.items() if key != "latent_avg"},
                            strict=True, assign=True)
    return encoder.eval(), weights["latent_avg"]


@pytest.mark.parametrize("head", [E4E, PSP])
def test_ffhq_size_codes_match_the_authors_encoder(head):
    encoder, latent_avg = seeded_encoder(StyleEncoderConfig(head=head), SEEDS[head])
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        codes = encoder.codes(image, latent_avg)
    golden = torch.from_numpy(np.load(GOLDEN)[f"{head}_codes"])
    assert codes.shape == golden.shape == (1, 18, 512)
    assert (golden - latent_avg).abs().mean() > 0.05  # the encoder's part is not negligible beside latent_avg
    torch.testing.assert_close(codes, golden, atol=ATOL, rtol=0)


def test_backbone_shares_arcface_blocks_and_keys():
    encoder, arcface = StyleEncoder(), ArcFace()
    ours = {key: value.shape for key, value in encoder.state_dict().items() if key.startswith(("input_layer.", "body."))}
    theirs = {key: value.shape for key, value in arcface.state_dict().items() if key.startswith(("input_layer.", "body."))}
    assert ours == theirs
    assert type(encoder.body[0]) is type(arcface.body[0])


def test_e4e_rows_are_a_base_w_plus_deltas():
    encoder, _ = seeded_encoder(TINY, 3)
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    psp = StyleEncoder(StyleEncoderConfig(**{**TINY.__dict__, "head": PSP})).eval()
    psp.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        e4e_codes, psp_codes = encoder(image), psp(image)
    torch.testing.assert_close(e4e_codes[:, 0], psp_codes[:, 0])  # the same head gives the base w
    torch.testing.assert_close(e4e_codes[:, 1:], psp_codes[:, :1] + psp_codes[:, 1:])
    assert not torch.allclose(e4e_codes[0], e4e_codes[1])  # the codes depend on the image


def test_heads_reduce_each_pyramid_level_to_one_row():
    encoder = StyleEncoder()
    convs = [sum(1 for layer in head.convs if isinstance(layer, torch.nn.Conv2d)) for head in encoder.styles]
    assert convs == [4] * 3 + [5] * 4 + [6] * 11  # 16, 32 and 64 px maps halved down to 1 px
