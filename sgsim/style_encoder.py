"""Encoders from a photo to StyleGAN2 W+ in one forward pass: e4e ('Designing an Encoder for StyleGAN Image
Manipulation', Tov et al. 2021) and pSp's GradualStyleEncoder (Richardson et al. 2021).

Both read an aligned 256 px image with an IR-SE50 body (the blocks of sgsim.identity's ArcFace), build a small
feature pyramid from its last three stages and map each W+ row with a strided-convolution head: rows 0-2 from
the coarsest map, 3-6 from the middle one, the rest from the finest. pSp's heads give each row; e4e's first head
gives one base w and every other head a delta added to it, which keeps the code close to W and editable. The
checkpoint's `latent_avg` is added last. Module and key names follow omertov/encoder4editing
(models/encoders/psp_encoders.py), so the published state dicts load strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sgsim.identity import IR_SE50, IrSeConfig, ir_se_body, ir_se_stem, stage_ends
from stylegan2.networks import FullyConnectedLayer

E4E, PSP = "e4e", "psp"
HEADS = {E4E: "Encoder4Editing", PSP: "GradualStyleEncoder"}  # our name -> the authors' opts['encoder_type']
# First W+ rows read from the middle and the fine feature maps (psp_encoders.py coarse_ind, middle_ind).
MIDDLE_ROW, FINE_ROW = 3, 7
HEAD_SLOPE = 0.01  # torch.nn.LeakyReLU's default negative slope, which the heads use


@dataclass(frozen=True)
class StyleEncoderConfig:
    """Shape of an e4e / pSp encoder; the defaults are the published FFHQ encoders' (1024 px generator, 18 rows)."""

    head: str = E4E  # E4E (base w + per-row deltas) or PSP (one code per row)
    num_ws: int = 18  # W+ rows of the generator it was trained for: 2 log2(resolution) - 2
    w_dim: int = 512  # width of a W+ row, and of every head
    backbone: IrSeConfig = field(default=IR_SE50)  # residual body; its last three stages feed the pyramid
    input_size: int = 256  # side of the aligned face the encoder reads

    @property
    def pyramid_channels(self) -> int:
        """Width of the feature pyramid: the last stage's, which the two lateral 1x1 convolutions match."""
        return self.backbone.stages[-1][0]


class StyleHead(nn.Module):
    """Strided 3x3 convolutions with leaky ReLU down to 1x1, then an equalised linear layer: one W+ row
    (the authors' GradualStyleBlock; keys convs.{0,2,...}, linear.weight/bias)."""

    def __init__(self, in_channels: int, w_dim: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channels if index == 0 else w_dim, w_dim, 3, 2, 1), nn.LeakyReLU(HEAD_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = FullyConnectedLayer(w_dim, w_dim)
        self.w_dim = w_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(features).reshape(-1, self.w_dim))


def upsample_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """A pyramid level: the coarser map bilinearly resized (align_corners=True, as the authors') plus the lateral."""
    return F.interpolate(coarse, size=lateral.shape[2:], mode="bilinear", align_corners=True) + lateral


class StyleEncoder(nn.Module):
    """An aligned face [N, 3, S, S] in [-1, 1] (S = config.input_size) to W+ offsets [N, num_ws, w_dim] from the
    generator's average latent; `codes` adds that average."""

    def __init__(self, config: StyleEncoderConfig = StyleEncoderConfig()):
        super().__init__()
        if config.head not in HEADS:
            raise ValueError(f"unknown encoder head {config.head!r}; choose one of {sorted(HEADS)}")
        if config.num_ws <= FINE_ROW or len(config.backbone.stages) < 3:
            raise ValueError(f"an e4e/pSp encoder needs more than {FINE_ROW} W+ rows and at least 3 backbone stages")
        self.config = config
        self.input_layer = ir_se_stem(config.backbone)
        self.body = ir_se_body(config.backbone)
        stages = config.backbone.stages
        width = config.pyramid_channels
        coarse_side = config.input_size // 2 ** len(stages)
        self.styles = nn.ModuleList(
            StyleHead(width, config.w_dim, coarse_side * (1 if row < MIDDLE_ROW else 2 if row < FINE_ROW else 4))
            for row in range(config.num_ws)
        )
        self.latlayer1 = nn.Conv2d(stages[-2][0], width, 1)
        self.latlayer2 = nn.Conv2d(stages[-3][0], width, 1)
        self._taps = stage_ends(config.backbone)[-3:]

    def pyramid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coarse, middle and fine feature maps: the last stage, then each upsampled and added to a lateral."""
        x = self.input_layer(images)
        taps = []
        for index, unit in enumerate(self.body):
            x = unit(x)
            if index in self._taps:
                taps.append(x)
        fine_lateral, middle_lateral, coarse = taps
        middle = upsample_add(coarse, self.latlayer1(middle_lateral))
        return coarse, middle, upsample_add(middle, self.latlayer2(fine_lateral))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        coarse, middle, fine = self.pyramid(images)
        rows = [head(coarse if row < MIDDLE_ROW else middle if row < FINE_ROW else fine)
                for row, head in enumerate(self.styles)]
        if self.config.head == E4E:  # row 0 is the base w; every other head predicts a delta from it
            rows = [rows[0]] + [rows[0] + delta for delta in rows[1:]]
        return torch.stack(rows, dim=1)

    def codes(self, images: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
        """W+ codes [N, num_ws, w_dim]: the encoder's output plus the average latent ([num_ws, w_dim] or [w_dim])."""
        return self(images) + latent_avg

    def extra_repr(self) -> str:
        return f"head={self.config.head}, num_ws={self.config.num_ws}, input_size={self.config.input_size}"
