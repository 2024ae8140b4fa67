"""ArcFace IR-SE50 face embeddings and the identity-preservation loss of the edit loop; the IR-SE blocks are also
the body of the e4e / pSp photo encoders (sgsim.style_encoder).

Layout and state-dict key names follow TreB1eN/InsightFace_Pytorch (`model_ir_se50.pth`, also used by
StyleCLIP), so the released file loads strictly into this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from checkpoints.containers import refusal_line
from sgsim.errors import NetworkFileError


@dataclass(frozen=True)
class IrSeConfig:
    """Widths and depths of an IR-SE backbone; the default is IR-SE50 for 112 px faces."""

    stem_channels: int = 64  # Output channels of the 3x3 input convolution.
    stages: tuple[tuple[int, int], ...] = ((64, 3), (128, 4), (256, 14), (512, 3))  # (channels, units); each stage halves the size.
    se_reduction: int = 16  # Squeeze-excitation bottleneck ratio.
    input_size: int = 112  # Face crop side in pixels.
    embedding_dim: int = 512  # Size of the identity embedding.


IR_SE50 = IrSeConfig()

# The face crop StyleCLIP applies to a 256 px FFHQ-aligned image (rows 35:223, columns 32:220)
# before pooling to the network's 112 px (criteria/id_loss.py).
_ALIGNED_SIZE = 256
_FACE_ROWS = slice(35, 223)
_FACE_COLS = slice(32, 220)


class SqueezeExcitation(nn.Module):
    """Channel gates from globally pooled features (keys fc1, fc2: bias-free 1x1 convolutions)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


class Subsample(nn.Module):
    """Every `stride`-th row and column: what TreB1eN's parameter-free shortcut MaxPool2d(1, stride) computes (a
    maximum over one element), without the pooling kernel and its indices (at stride 1 it is the identity)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class BottleneckIrSe(nn.Module):
    """Pre-activation residual unit: BN, 3x3 conv, PReLU, 3x3 conv (strided), BN, SE; plus a shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int, se_reduction: int):
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
            SqueezeExcitation(channels, se_reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_se_stem(config: IrSeConfig) -> nn.Sequential:
    """The input layer (keys input_layer.0-2): 3x3 convolution, BN, PReLU."""
    return nn.Sequential(
        nn.Conv2d(3, config.stem_channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(config.stem_channels),
        nn.PReLU(config.stem_channels),
    )


def ir_se_body(config: IrSeConfig) -> nn.Sequential:
    """The residual units of every stage in one Sequential (keys body.N), the first unit of each stage strided."""
    units = []
    in_channels = config.stem_channels
    for channels, count in config.stages:
        for index in range(count):
            units.append(BottleneckIrSe(in_channels, channels, 2 if index == 0 else 1, config.se_reduction))
            in_channels = channels
    return nn.Sequential(*units)


def stage_ends(config: IrSeConfig) -> list[int]:
    """Index in the body of each stage's last unit (IR-SE50: 2, 6, 20, 23), where a stage's features are read."""
    ends, total = [], 0
    for _, count in config.stages:
        total += count
        ends.append(total - 1)
    return ends


class ArcFace(nn.Module):
    """IR-SE face-recognition backbone: a [N, 3, 112, 112] face crop in [-1, 1] to an L2-normalised embedding."""

    def __init__(self, config: IrSeConfig = IR_SE50):
        super().__init__()
        self.config = config
        self.input_layer = ir_se_stem(config)
        self.body = ir_se_body(config)
        in_channels = config.stages[-1][0]
        final_size = config.input_size // 2 ** len(config.stages)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Dropout(),  # inactive in eval mode; kept so the Linear sits at key index 3
            nn.Flatten(),
            nn.Linear(in_channels * final_size * final_size, config.embedding_dim),
            nn.BatchNorm1d(config.embedding_dim),
        )

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        # Normalised in fp32 even under autocast: the identity distance is a small difference of cosines.
        return F.normalize(self.output_layer(self.body(self.input_layer(faces))).float(), dim=1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Identity embeddings [N, D] of FFHQ-aligned images [N, 3, H, W] in [-1, 1], any resolution."""
        if images.shape[2] != _ALIGNED_SIZE:
            images = F.adaptive_avg_pool2d(images, _ALIGNED_SIZE)
        faces = images[:, :, _FACE_ROWS, _FACE_COLS]
        return self(F.adaptive_avg_pool2d(faces, self.config.input_size))


class IdentityLoss(nn.Module):
    """1 - cos(ArcFace(images), ArcFace(source)) per image; the gradient flows to `images`, the source is a constant.

    (StyleCLIP's edit loop passes these two the other way round, so its identity term sends no gradient.)
    """

    def __init__(self, net: ArcFace):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor, source_images: torch.Tensor) -> torch.Tensor:
        return self.to_source(source_images)(images)

    def to_source(self, source_images: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The distance to these source images, their embeddings computed once (an edit loop reuses them every step)."""
        with torch.no_grad():
            source = self.net.embed(source_images)

        def distance(images: torch.Tensor) -> torch.Tensor:
            return 1.0 - (self.net.embed(images) * source).sum(dim=1)

        return distance


def read_arcface(path: str | os.PathLike, config: IrSeConfig = IR_SE50) -> ArcFace:
    """Build ArcFace from a TreB1eN-layout state dict file (torch.save, read with weights_only=True), in eval mode."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or damaged file
        raise NetworkFileError(
            f"{path} is not a readable ArcFace state dict ({type(exc).__name__}: {refusal_line(exc)}); nothing from it "
            f"was run; expected TreB1eN's model_ir_se50.pth, re-download it with `sgsim weights download arcface-ir-se50`"
        ) from None
    if not isinstance(state, dict):
        raise NetworkFileError(f"{path} holds a {type(state).__name__}, not an ArcFace state dict (model_ir_se50.pth)")
    net = ArcFace(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NetworkFileError(
            f"{path} does not match the ArcFace IR-SE50 layout (TreB1eN model_ir_se50.pth): {str(exc)[:400]}"
        ) from None
    return net.eval().requires_grad_(False)

