"""The StyleGAN2(-ADA) generator, bottom-up: helper functions, layers, blocks, networks.

State-dict names, shapes and the order of floating-point operations follow NVIDIA's stylegan2-ada-pytorch
(training/networks.py), so its checkpoints load with strict=True and reproduce its images.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from stylegan2.errors import NetworkConfigError
from stylegan2.ops import upfirdn2d
from stylegan2.ops.bias_act import ACTIVATIONS, bias_act
from stylegan2.ops.conv2d_resample import conv2d_resample

NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale x to unit mean square along `dim` (pixel norm of the latent)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,                            # Input [batch_size, in_channels, in_height, in_width].
    weight: torch.Tensor,                       # Weight [out_channels, in_channels, kernel_height, kernel_width].
    styles: torch.Tensor,                       # Per-sample input-channel scales [batch_size, in_channels].
    noise: torch.Tensor | None = None,          # Optional noise added to the output, after demodulation.
    up: int = 1,                                # Integer upsampling factor.
    padding: int = 0,                           # Padding with respect to the upsampled image.
    resample_filter: torch.Tensor | None = None,  # FIR filter for upsampling, from upfirdn2d.setup_filter().
    demodulate: bool = True,                    # Normalise each output channel's weights to unit norm?
    flip_weight: bool = True,                   # True = correlation (like F.conv2d), False = convolution.
    fused_modconv: bool = True,                 # One grouped convolution for the whole batch instead of scaling activations?
    gain: float = 1,                            # Scale of the output before the noise, applied to the small per-sample factors.
    energy: torch.Tensor | None = None,         # sum over the kernel of weight^2 [out_channels, in_channels], if known.
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: weights scaled per sample by styles, then demodulated."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.shape[1] != in_channels or tuple(styles.shape) != (batch_size, in_channels):
        raise NetworkConfigError(
            f"modulated_conv2d: x {tuple(x.shape)} and styles {tuple(styles.shape)} do not fit a weight of shape {tuple(weight.shape)}"
        )
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that fp16 cannot overflow; demodulation cancels the scale.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        energy = None  # a given energy is the unscaled weight's

    if gain != 1 and not demodulate:
        styles = styles * gain  # without demodulation the output is linear in the styles

    w = None
    dcoefs = None
    if fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [NOIkk]
        if demodulate:
            dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [NO]
            w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    elif demodulate:
        # The same sums with kh*kw times less memory: sum_ik (W_oik s_ni)^2 = sum_i s_ni^2 sum_k W_oik^2. Elementwise,
        # not a matmul, so that autocast cannot lower its precision.
        energy = weight.square().sum(dim=[2, 3]) if energy is None else energy  # [OI]
        dcoefs = ((styles.square().unsqueeze(1) * energy.unsqueeze(0)).sum(dim=2) + 1e-8).rsqrt()  # [NO]
    if gain != 1 and demodulate:
        dcoefs = dcoefs * gain
        if w is not None:
            w = w * gain

    if not fused_modconv and kh == kw == 1 and up == 1 and padding == 0:
        # A 1x1 kernel (toRGB): the per-sample weights are as small as the styles, so they are scaled instead of
        # the activations: one batched matrix product, and no pass over x to scale it or for the styles' gradient.
        w = weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)  # [NOI]
        if demodulate:
            w = w * dcoefs.unsqueeze(2)
        w = w.to(x.dtype)
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            x = torch.matmul(w, x.flatten(2)).unflatten(2, x.shape[2:])
        else:  # channels_last: [N, H*W, I] rows, so that x's gradient keeps x's layout
            x = torch.matmul(x.permute(0, 2, 3, 1).flatten(1, 2), w.transpose(1, 2)).unflatten(1, x.shape[2:]).permute(0, 3, 1, 2)
        return x.add_(noise.to(x.dtype)) if noise is not None else x

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            return x.add_(noise.to(x.dtype))
        return x

    # The batch becomes the groups of one convolution.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate: weights stored unscaled, scaled at run time."""

    def __init__(
        self,
        in_features: int,               # Number of input features.
        out_features: int,              # Number of output features.
        bias: bool = True,              # Add a bias before the activation?
        activation: str = "linear",     # Activation function: 'linear', 'lrelu', ... (see ops.bias_act.ACTIVATIONS).
        lr_multiplier: float = 1,       # Learning-rate multiplier (0.01 in the mapping network).
        bias_init: float = 0,           # Initial value of the bias.
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise NetworkConfigError(f"FullyConnectedLayer: unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class LabelConcat(torch.nn.Module):
    """Original TF StyleGAN2 conditioning: labels projected to z_dim by a plain matrix (no bias, no gain)."""

    def __init__(
        self,
        c_dim: int,     # Number of label entries.
        z_dim: int,     # Size of the projection, concatenated to z.
    ):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn([c_dim, z_dim]))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return c @ self.weight

    def extra_repr(self) -> str:
        return f"c_dim={self.weight.shape[0]}, z_dim={self.weight.shape[1]}"


class MappingNetwork(torch.nn.Module):
    """z (and optional label c) -> w, broadcast to num_ws copies, with truncation toward the tracked mean w_avg."""

    def __init__(
        self,
        z_dim: int,                             # Input latent (Z) dimensionality, 0 = no latent.
        c_dim: int,                             # Conditioning label (C) dimensionality, 0 = no label.
        w_dim: int,                             # Intermediate latent (W) dimensionality.
        num_ws: int | None,                     # Number of intermediate latents to output, None = do not broadcast.
        num_layers: int = 8,                    # Number of mapping layers.
        embed_features: int | None = None,      # Label embedding size, None = same as w_dim (ADA conditioning).
        layer_features: int | None = None,      # Hidden layer size, None = same as w_dim.
        activation: str = "lrelu",              # Activation of the hidden layers.
        lr_multiplier: float = 0.01,            # Learning-rate multiplier of the mapping layers.
        w_avg_beta: float | None = 0.995,       # Decay of the running mean of W, None = do not track.
        label_concat: bool = False,             # Original TF StyleGAN2 conditioning (label_concat.weight) instead of ADA's embed.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.label_concat_mode = bool(label_concat) and c_dim > 0
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if self.label_concat_mode:
            embed_features = z_dim
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if self.label_concat_mode:
            self.label_concat = LabelConcat(c_dim, z_dim)
        elif c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def _embed_inputs(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        for name, tensor, size in (("z", z, self.z_dim), ("c", c, self.c_dim)):
            if size > 0 and (tensor is None or tensor.ndim != 2 or tensor.shape[1] != size):
                shape = None if tensor is None else tuple(tensor.shape)
                raise NetworkConfigError(f"MappingNetwork: {name} must have shape [N, {size}], got {shape}")
        if self.label_concat_mode:
            return normalize_2nd_moment(torch.cat([z.to(torch.float32), self.label_concat(c.to(torch.float32))], dim=1))
        x = normalize_2nd_moment(z.to(torch.float32)) if self.z_dim > 0 else None
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        return x

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """[N, z_dim] (and [N, c_dim]) -> [N, num_ws, w_dim]; update_emas moves w_avg toward this batch's mean w."""
        x = self._embed_inputs(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise NetworkConfigError("MappingNetwork: truncation needs w_avg, but this network was built with w_avg_beta=None")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, label_concat={self.label_concat_mode}"


@dataclass(frozen=True)
class FixedWeight:
    """A modulated layer's weight prepared once for many passes in which it does not change (an edit's loop)."""

    weight: torch.Tensor  # the weight in the dtype its block computes in
    energy: torch.Tensor  # sum over the kernel of the fp32 weight squared [out_channels, in_channels]


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution (optionally upsampling), noise injection, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,                               # Number of input channels.
        out_channels: int,                              # Number of output channels.
        w_dim: int,                                     # Intermediate latent (W) dimensionality.
        resolution: int,                                # Output resolution.
        kernel_size: int = 3,                           # Convolution kernel size.
        up: int = 1,                                    # Integer upsampling factor.
        use_noise: bool = True,                         # Enable noise input?
        activation: str = "lrelu",                      # Activation function.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter for upsampling.
        conv_clamp: float | None = None,                # Clamp the output to +-X, None = no clamping.
        channels_last: bool = False,                    # Store the weight in channels_last format?
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise NetworkConfigError(f"SynthesisLayer: unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter), device=torch.get_default_device()))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.fixed: FixedWeight | None = None  # set by stylegan2.precision while the weights are fixed

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool = True, gain: float = 1) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise NetworkConfigError(f"noise_mode={noise_mode!r} is not one of {NOISE_MODES}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        flip_weight = self.up == 1  # slightly faster; both give the same result
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        # Unfused (the CPU's form), the activation's gain moves into the layer's small factors (demodulation
        # coefficients, noise, bias): act(g * y) = g * act(y) for g > 0, one pass fewer over the layer's output,
        # forward and backward. Fused keeps NVIDIA's order of operations.
        folded = act_gain if not fused_modconv and ACTIVATIONS[self.activation].homogeneous and act_gain > 0 else 1.0
        fixed = self.fixed
        weight = fixed.weight if fixed is not None and fixed.weight.dtype == x.dtype else self.weight
        x = modulated_conv2d(
            x, weight, styles, noise=noise * folded if noise is not None and folded != 1 else noise, up=self.up,
            padding=self.padding, resample_filter=self.resample_filter, flip_weight=flip_weight,
            fused_modconv=fused_modconv, gain=folded, energy=fixed.energy if fixed is not None else None,
        )
        bias = self.bias * folded if folded != 1 else self.bias
        return bias_act(x, bias.to(x.dtype), act=self.activation, gain=act_gain / folded, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
            f"up={self.up}, use_noise={self.use_noise}, activation={self.activation}, conv_clamp={self.conv_clamp}"
        )


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(
        self,
        in_channels: int,                   # Number of input channels.
        out_channels: int,                  # Number of image channels.
        w_dim: int,                         # Intermediate latent (W) dimensionality.
        kernel_size: int = 1,               # Convolution kernel size.
        conv_clamp: float | None = None,    # Clamp the output to +-X, None = no clamping.
        channels_last: bool = False,        # Store the weight in channels_last format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, conv_clamp={self.conv_clamp}"


class SkipLayer(torch.nn.Module):
    """The 'resnet' shortcut: unmodulated 1x1 convolution with 2x FIR upsampling, no bias."""

    def __init__(
        self,
        in_channels: int,                               # Number of input channels.
        out_channels: int,                              # Number of output channels.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter for upsampling.
        channels_last: bool = False,                    # Store the weight in channels_last format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter), device=torch.get_default_device()))
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]).to(memory_format=memory_format))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w.to(x.dtype), self.resample_filter, up=2, flip_weight=False)
        return bias_act(x, None, gain=gain)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, up=2"


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: (const or conv0 up) -> conv1 -> torgb, per architecture."""

    def __init__(
        self,
        in_channels: int,                               # Number of input channels, 0 = first block (learned constant input).
        out_channels: int,                              # Number of output channels.
        w_dim: int,                                     # Intermediate latent (W) dimensionality.
        resolution: int,                                # Resolution of this block.
        img_channels: int,                              # Number of output color channels.
        is_last: bool,                                  # Is this the last block?
        architecture: str = "skip",                     # 'orig', 'skip' or 'resnet'.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter for upsampling.
        conv_clamp: float | None = None,                # Clamp convolution outputs to +-X, None = no clamping.
        use_fp16: bool = False,                         # Run this block in fp16 (on CUDA only)?
        fp16_channels_last: bool = False,               # Use channels_last memory format with fp16?
        use_noise: bool = True,                         # Enable noise inputs?
    ):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise NetworkConfigError(f"SynthesisBlock: architecture={architecture!r} is not one of {ARCHITECTURES}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fp16_on_cpu = False  # CPU fp16 kernels are slow: True only to check fp16 numerics without a GPU
        # The dtype use_fp16 means: float16 (NVIDIA's, with clamps), or bfloat16 (fp32's range; CPUs compute it natively).
        self.reduced_dtype = torch.float16
        self.fused_modconv: bool | None = None  # default for forward's fused_modconv; None = NVIDIA's rule
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter), device=torch.get_default_device()))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(w_dim=w_dim, resolution=resolution, use_noise=use_noise, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, resample_filter=resample_filter, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = SkipLayer(in_channels, out_channels, resample_filter=resample_filter, channels_last=self.channels_last)

    def compute_dtype(self, device: torch.device, force_fp32: bool = False) -> torch.dtype:
        """The dtype this block computes in on `device`: its reduced dtype if use_fp16 (fp16 on CUDA, or on the CPU
        when asked; bf16 anywhere), else fp32."""
        reduced = device.type == "cuda" or self.fp16_on_cpu or self.reduced_dtype == torch.bfloat16
        return self.reduced_dtype if self.use_fp16 and not force_fp32 and reduced else torch.float32

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        noise_mode: str = "const",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features, image so far, ws [N, num_conv + num_torgb, w_dim]) -> (features, image) at this resolution."""
        w_iter = iter(ws.unbind(dim=1))
        dtype = self.compute_dtype(ws.device, force_fp32)
        half = dtype != torch.float32
        memory_format = torch.channels_last if self.channels_last and half else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv
        if fused_modconv is None:  # NVIDIA's rule: one grouped convolution in inference, unless fp16 with a batch
            fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv, gain=math.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)

        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return (
            f"resolution={self.resolution}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"architecture={self.architecture}, use_fp16={self.use_fp16}"
        )


def lowest_fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """The lowest block resolution that runs in fp16 when the `num_fp16_res` highest ones do (never the 4 px block)."""
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], one block per power-of-two resolution from 4."""

    def __init__(
        self,
        w_dim: int,                                     # Intermediate latent (W) dimensionality.
        img_resolution: int,                            # Output image resolution, a power of two >= 4.
        img_channels: int,                              # Number of color channels.
        channel_base: int = 32768,                      # Overall multiplier for the number of channels.
        channel_max: int = 512,                         # Maximum number of channels in any layer.
        num_fp16_res: int = 0,                          # Use fp16 for the N highest resolutions (CUDA only).
        conv_clamp: float | None = None,                # Clamp convolution outputs to +-X, None = no clamping.
        architecture: str = "skip",                     # 'orig', 'skip' or 'resnet'.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter for upsampling.
        use_noise: bool = True,                         # Enable noise inputs?
        fp16_channels_last: bool = False,               # Use channels_last memory format with fp16?
    ):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise NetworkConfigError(f"SynthesisNetwork: img_resolution={img_resolution} must be a power of two >= 4")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = lowest_fp16_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                is_last=is_last, architecture=architecture, resample_filter=resample_filter, conv_clamp=conv_clamp,
                use_fp16=res >= fp16_resolution, fp16_channels_last=fp16_channels_last, use_noise=use_noise,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def rows_read(self, resolution: int | None = None) -> int:
        """How many leading W+ rows the blocks up to `resolution` (None: all) read; the rows after them feed only
        the blocks above it."""
        resolution = self.check_resolution(resolution)
        blocks = [getattr(self, f"b{res}") for res in self.block_resolutions if res <= resolution]
        return sum(block.num_conv for block in blocks) + blocks[-1].num_torgb

    def check_resolution(self, resolution: int | None) -> int:
        """`resolution` (None: img_resolution) if the network can stop there: one of its block resolutions and, below
        the top, an architecture whose every block adds to the image (skip)."""
        if resolution is None or resolution == self.img_resolution:
            return self.img_resolution
        if resolution not in self.block_resolutions:
            raise NetworkConfigError(f"SynthesisNetwork: resolution {resolution} is not one of its block resolutions {self.block_resolutions}")
        if self.b4.architecture != "skip":
            raise NetworkConfigError(f"SynthesisNetwork: only the skip architecture has an image below the top resolution; "
                                     f"this one is {self.b4.architecture!r}")
        return resolution

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False, fused_modconv: bool | None = None,
                resolution: int | None = None) -> torch.Tensor:
        """Image in about [-1, 1] (not clamped); each block's torgb shares its w with the next block's conv0.

        `resolution` below img_resolution (skip architecture): stop after that block and return its running image,
        the sum of the toRGB outputs so far, exactly what the full pass holds there; the blocks above it, and the
        W+ rows only they read (rows_read), are skipped. ws still has all num_ws rows."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise NetworkConfigError(f"SynthesisNetwork: ws must have shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        resolution = self.check_resolution(resolution)
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions[: self.block_resolutions.index(resolution) + 1]:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fused_modconv=fused_modconv, noise_mode=noise_mode)
        return img

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}"


class MappedGenerator(torch.nn.Module):
    """A generator as mapping (z, c -> ws) then synthesis (ws -> image): what StyleGAN2's and StyleGAN3's share.

    Subclasses check and complete their settings, then hand them here with the synthesis network's class."""

    def __init__(
        self,
        init_kwargs: dict[str, Any],                    # The complete settings, recorded as given (z_dim .. img_channels read).
        synthesis_class: type[torch.nn.Module],         # SynthesisNetwork of the family; built before the mapping, as NVIDIA's.
        synthesis_kwargs: dict[str, Any],               # Arguments for synthesis_class besides w_dim, img_resolution, img_channels.
        mapping_kwargs: dict[str, Any],                 # Arguments for MappingNetwork besides z_dim, c_dim, w_dim, num_ws.
    ):
        super().__init__()
        self.init_kwargs = init_kwargs
        self.z_dim = init_kwargs["z_dim"]
        self.c_dim = init_kwargs["c_dim"]
        self.w_dim = init_kwargs["w_dim"]
        self.img_resolution = init_kwargs["img_resolution"]
        self.img_channels = init_kwargs["img_channels"]
        self.synthesis = synthesis_class(w_dim=self.w_dim, img_resolution=self.img_resolution, img_channels=self.img_channels,
                                         **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """z [N, z_dim] (and c [N, c_dim]) -> image [N, img_channels, R, R] in about [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"


class Generator(MappedGenerator):
    """StyleGAN2-ADA generator: mapping (z, c -> ws) then synthesis (ws -> image)."""

    def __init__(
        self,
        z_dim: int,                                     # Input latent (Z) dimensionality.
        c_dim: int,                                     # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim: int,                                     # Intermediate latent (W) dimensionality.
        img_resolution: int,                            # Output resolution.
        img_channels: int,                              # Number of output color channels.
        mapping_kwargs: dict[str, Any] | None = None,   # Arguments for MappingNetwork.
        synthesis_kwargs: dict[str, Any] | None = None,  # Arguments for SynthesisNetwork.
    ):
        # Checked and completed before anything is built, so that a typo fails with the allowed names.
        init_kwargs = {
            "z_dim": z_dim,
            "c_dim": c_dim,
            "w_dim": w_dim,
            "img_resolution": img_resolution,
            "img_channels": img_channels,
            "mapping_kwargs": _effective_kwargs(MappingNetwork, mapping_kwargs or {}, skip=("z_dim", "c_dim", "w_dim", "num_ws")),
            "synthesis_kwargs": _effective_kwargs(SynthesisNetwork, synthesis_kwargs or {}, skip=("w_dim", "img_resolution", "img_channels")),
        }
        super().__init__(init_kwargs, SynthesisNetwork, synthesis_kwargs or {}, mapping_kwargs or {})


def _effective_kwargs(cls: type, given: dict[str, Any], skip: Sequence[str]) -> dict[str, Any]:
    """`given` completed with the constructor's defaults, as JSON-friendly values (tuples become lists)."""
    parameters = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(given) - set(parameters) | set(given) & set(skip))
    if unknown:
        raise NetworkConfigError(f"{cls.__name__}: unexpected keyword arguments {unknown}; allowed: {sorted(set(parameters) - set(skip) - {'self'})}")
    return {name: _plain(given.get(name, p.default)) for name, p in parameters.items() if name != "self" and name not in skip}


def _plain(value: Any) -> Any:
    """Sequences as lists and numpy/torch scalars (as checkpoints carry them) as Python numbers, for JSON."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        return value.tolist()
    return value
