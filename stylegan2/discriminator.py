"""The StyleGAN2 discriminator ('resnet' architecture), bottom-up: layer, block, epilogue, network.

Written for training small generators with sgsim (the shapes world); its layout follows the StyleGAN2 paper:
fromRGB at the top resolution, residual blocks that halve the resolution with a [1,3,3,1] low-pass before each
stride, a minibatch-standard-deviation feature, and a 4x4 epilogue ending in one logit. Equalised learning rate
throughout, as in the generator.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from stylegan2.ops import upfirdn2d
from stylegan2.ops.bias_act import bias_act


class Conv2dLayer(torch.nn.Module):
    """Convolution with equalised learning rate, optionally halving the resolution (low-pass, then stride 2)."""

    def __init__(
        self,
        in_channels: int,                               # Number of input channels.
        out_channels: int,                              # Number of output channels.
        kernel_size: int,                               # Width and height of the convolution kernel.
        bias: bool = True,                              # Add a bias?
        activation: str = "linear",                     # 'linear' or 'lrelu' (gain sqrt 2).
        down: bool = False,                             # Halve the resolution?
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter applied before the stride.
    ):
        super().__init__()
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down:
            taps = self.resample_filter.shape[-1]
            # Pad so that the filtered image, taken every other pixel by the kernel, lands on exactly half the size.
            pad = (taps - 2 + self.kernel_size - 1) // 2
            x = upfirdn2d.upfirdn2d(x, self.resample_filter, padding=[pad, pad, pad, pad])
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        return bias_act(x, self.bias, act=self.activation)

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return f"in_channels={in_channels}, out_channels={out_channels}, kernel_size={self.kernel_size}, activation={self.activation}, down={self.down}"


class DenseLayer(torch.nn.Module):
    """Fully connected layer with equalised learning rate."""

    def __init__(
        self,
        in_features: int,                               # Number of input features.
        out_features: int,                              # Number of output features.
        activation: str = "linear",                     # 'linear' or 'lrelu' (gain sqrt 2).
    ):
        super().__init__()
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]))
        self.bias = torch.nn.Parameter(torch.zeros([out_features]))
        self.weight_gain = 1 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x.matmul((self.weight * self.weight_gain).t()), self.bias, act=self.activation)


class DiscriminatorBlock(torch.nn.Module):
    """Two 3x3 convolutions, the second halving the resolution, plus a 1x1 shortcut; summed at sqrt(1/2) each."""

    def __init__(
        self,
        in_channels: int,                               # Number of input channels.
        out_channels: int,                              # Number of output channels.
    ):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=True)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class MinibatchStd(torch.nn.Module):
    """Appends the standard deviation of features across groups of the batch (one extra channel), so the
    discriminator can see a lack of variety."""

    def __init__(
        self,
        group_size: int = 4,                            # Images per group (the batch must divide by it, or be smaller).
    ):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n)
        if n % group:
            group = 1
        y = x.reshape(group, -1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/group, c, h, w]
        y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)


class Discriminator(torch.nn.Module):
    """StyleGAN2 'resnet' discriminator: image [N, C, R, R] -> realness logit [N, 1]."""

    def __init__(
        self,
        img_resolution: int,                            # Input resolution (a power of two, >= 8).
        img_channels: int = 3,                          # Number of input color channels.
        channel_base: int = 32768,                      # Overall multiplier for the number of channels.
        channel_max: int = 512,                         # Maximum number of channels in any layer.
        mbstd_group_size: int = 4,                      # Group size of the minibatch standard deviation.
    ):
        super().__init__()
        self.init_kwargs = {"img_resolution": img_resolution, "img_channels": img_channels, "channel_base": channel_base,
                            "channel_max": channel_max, "mbstd_group_size": mbstd_group_size}
        self.img_resolution = img_resolution
        log2 = int(math.log2(img_resolution))
        if 2**log2 != img_resolution or img_resolution < 8:
            raise ValueError(f"Discriminator: img_resolution={img_resolution} must be a power of two, at least 8")

        def channels(resolution: int) -> int:
            return min(channel_base // resolution, channel_max)

        self.from_rgb = Conv2dLayer(img_channels, channels(img_resolution), 1, activation="lrelu")
        self.resolutions = [2**i for i in range(log2, 2, -1)]
        for resolution in self.resolutions:
            setattr(self, f"b{resolution}", DiscriminatorBlock(channels(resolution), channels(resolution // 2)))
        self.mbstd = MinibatchStd(mbstd_group_size)
        self.conv = Conv2dLayer(channels(4) + 1, channels(4), 3, activation="lrelu")
        self.fc = DenseLayer(channels(4) * 16, channels(4), activation="lrelu")
        self.out = DenseLayer(channels(4), 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(img)
        for resolution in self.resolutions:
            x = getattr(self, f"b{resolution}")(x)
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))

    def extra_repr(self) -> str:
        return f"img_resolution={self.img_resolution}"
