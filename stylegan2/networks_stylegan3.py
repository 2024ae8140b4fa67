"""The alias-free StyleGAN3 generator (configs T and R), bottom-up: helpers, input, layer, networks.

State-dict names, shapes and the order of floating-point operations follow NVlabs/stylegan3
(training/networks_stylegan3.py), so its pickles load with strict=True and reproduce its images. The
mapping network is StyleGAN2's (stylegan2.networks.MappingNetwork). Every layer computes in float32:
NVIDIA's fp16 layers (num_fp16_res) are a CUDA training speed-up, kept in the settings only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.utils.checkpoint

from stylegan2.errors import NetworkConfigError
from stylegan2.networks import NOISE_MODES, FullyConnectedLayer, MappedGenerator, MappingNetwork, _effective_kwargs
from stylegan2.ops.filtered_lrelu import filtered_lrelu

FAMILY = "stylegan3"


def input_transform(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The 3x3 matrix SynthesisInput.transform takes for an image moved by `translate` (in image widths) and rotated by
    `rotate` degrees: the inverse of that motion, since the network maps output coordinates back (NVIDIA's gen_images.py)."""
    angle = math.radians(rotate)
    s, c = math.sin(angle), math.cos(angle)
    motion = np.array([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]])
    return torch.from_numpy(np.linalg.inv(motion)).to(torch.float32)


def modulated_conv2d(
    x: torch.Tensor,                        # Input [batch_size, in_channels, in_height, in_width].
    weight: torch.Tensor,                   # Weight [out_channels, in_channels, kernel_height, kernel_width].
    styles: torch.Tensor,                   # Per-sample input-channel scales [batch_size, in_channels].
    demodulate: bool,                       # Normalise each output channel's weights to unit norm?
    padding: int,                           # Zero padding on every side.
    input_gain: torch.Tensor,               # Scalar scale of the input (1 / the tracked input magnitude).
) -> torch.Tensor:
    """StyleGAN3's modulated convolution: like StyleGAN2's, but weight and styles pre-normalised to unit mean square.

    Computed by scaling the activations (one shared-weight convolution for the batch) instead of NVIDIA's grouped
    convolution of per-sample weights: the same products in another order, and much faster on CPUs.
    """
    batch_size = x.shape[0]
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    scale = styles * input_gain  # [NI]
    y = torch.nn.functional.conv2d(x * scale.to(x.dtype).reshape(batch_size, -1, 1, 1), weight.to(x.dtype), padding=padding)
    if demodulate:
        energy = weight.square().sum(dim=[2, 3])  # [OI]
        dcoefs = ((styles.square().unsqueeze(1) * energy.unsqueeze(0)).sum(dim=2) + 1e-8).rsqrt()  # [NO]
        y = y * dcoefs.to(y.dtype).reshape(batch_size, -1, 1, 1)
    return y


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """A Kaiser-windowed low-pass FIR filter: separable [numtaps] or radially symmetric (jinc) [numtaps, numtaps];
    None for one tap (identity). The same design as NVIDIA's, so that a rebuilt network matches its stored filters."""
    if numtaps < 1:
        raise NetworkConfigError(f"design_lowpass_filter: numtaps={numtaps} must be >= 1")
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f *= np.outer(window, window)
    f /= np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)


class SynthesisInput(torch.nn.Module):
    """Fourier features on a grid, their frequencies rotated and shifted by an affine of w and by a user transform."""

    def __init__(
        self,
        w_dim: int,             # Intermediate latent (W) dimensionality.
        channels: int,          # Number of output channels (Fourier features).
        size: int,              # Output spatial size (square).
        sampling_rate: float,   # Output sampling rate.
        bandwidth: float,       # Output bandwidth: the largest frequency drawn.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = int(size)
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth
        # Random frequencies in a disc of radius `bandwidth`, random phases (overwritten by a checkpoint's).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)  # (r_c, r_s, t_x, t_y), from no rotation or translation at init
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))  # user inverse transform of the output image (input_transform)
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor, transforms: torch.Tensor | None = None) -> torch.Tensor:
        """w [N, w_dim] -> features [N, channels, size, size]; `transforms` [N, 3, 3], if given, replaces the user
        transform buffer per sample (a moving camera renders each frame with its own)."""
        batch = w.shape[0]
        user = self.transform.unsqueeze(0) if transforms is None else transforms.to(device=w.device, dtype=torch.float32)
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])  # inverse rotation of the image
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])  # inverse translation of the image
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ user  # rotate, then translate, then the user's transform

        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Fade out frequencies the user transform pushed past the band the next layers can represent.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size / self.sampling_rate
        theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grids = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(torch.nn.Module):
    """Modulated convolution, then filtered leaky ReLU: up to a temporary rate, lrelu, low-pass, down to the output rate."""

    def __init__(
        self,
        w_dim: int,                     # Intermediate latent (W) dimensionality.
        is_torgb: bool,                 # The final ToRGB layer (1x1, no demodulation, linear)?
        is_critically_sampled: bool,    # Critically sampled (no radial filter)?
        use_fp16: bool,                 # NVIDIA's fp16 flag, recorded only (every layer computes in fp32).
        in_channels: int,               # Number of input channels.
        out_channels: int,              # Number of output channels.
        in_size: int,                   # Input spatial size.
        out_size: int,                  # Output spatial size.
        in_sampling_rate: int,          # Input sampling rate (s).
        out_sampling_rate: int,         # Output sampling rate (s).
        in_cutoff: float,               # Input cutoff frequency (f_c).
        out_cutoff: float,              # Output cutoff frequency (f_c).
        in_half_width: float,           # Input transition band half-width (f_h).
        out_half_width: float,          # Output transition band half-width (f_h).
        conv_kernel: int = 3,           # Convolution kernel size; 1 for ToRGB.
        filter_size: int = 6,           # Low-pass filter taps per sample of the lower rate.
        lrelu_upsampling: int = 2,      # Rate of the leaky ReLU relative to the higher of in/out rates.
        use_radial_filters: bool = False,  # Radially symmetric downsampling filter (config R), unless critically sampled.
        conv_clamp: float | None = 256,  # Clamp the activation to +-X, None = no clamp.
        magnitude_ema_beta: float = 0.999,  # Decay of the tracked input magnitude (training only).
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate or out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise NetworkConfigError(f"SynthesisLayer: sampling rates {in_sampling_rate} -> {out_sampling_rate} are not integer "
                                     f"fractions of {self.tmp_sampling_rate}")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding that keeps sample positions centred (the symmetric interpretation, paper appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [N, in_channels, in_size, in_size], w [N, w_dim] -> [N, out_channels, out_size, out_size]."""
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             input_gain=self.magnitude_ema.rsqrt())
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), up=self.up_factor,
                              down=self.down_factor, padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, "
                f"in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, "
                f"in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g}, in_size={self.in_size}, "
                f"out_size={self.out_size}, in_channels={self.in_channels}, out_channels={self.out_channels}")


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_layers + 2, w_dim] -> image: Fourier input, num_layers filtered layers, ToRGB (one w each)."""

    def __init__(
        self,
        w_dim: int,                             # Intermediate latent (W) dimensionality.
        img_resolution: int,                    # Output image resolution.
        img_channels: int,                      # Number of color channels.
        channel_base: int = 32768,              # Overall multiplier for the number of channels.
        channel_max: int = 512,                 # Maximum number of channels in any layer.
        num_layers: int = 14,                   # Number of layers, excluding the Fourier input and ToRGB.
        num_critical: int = 2,                  # Number of critically sampled layers at the end.
        first_cutoff: float = 2,                # Cutoff frequency of the first layer (f_{c,0}).
        first_stopband: float = 2**2.1,         # Minimum stopband of the first layer (f_{t,0}).
        last_stopband_rel: float = 2**0.3,      # Minimum stopband of the last layer, relative to its cutoff.
        margin_size: int = 10,                  # Extra pixels computed outside the image on each side.
        output_scale: float = 0.25,             # Scale of the output image.
        num_fp16_res: int = 4,                  # NVIDIA's fp16 resolutions, recorded only (see the module docstring).
        conv_kernel: int = 3,                   # Convolution kernel size (1 in config R).
        filter_size: int = 6,                   # Low-pass filter taps per sample of the lower rate.
        lrelu_upsampling: int = 2,              # Rate of the leaky ReLU relative to the layer's rates.
        use_radial_filters: bool = False,       # Radially symmetric downsampling filters (config R)?
        conv_clamp: float | None = 256,         # Clamp activations to +-X, None = no clamp.
        magnitude_ema_beta: float = 0.999,      # Decay of the tracked input magnitudes (training only).
    ):
        super().__init__()
        if num_layers <= num_critical or num_critical < 0:
            raise NetworkConfigError(f"SynthesisNetwork: num_layers={num_layers} must exceed num_critical={num_critical} >= 0")
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        # With gradients, keep only each layer's input and recompute the layer in the backward pass: the filtered
        # leaky ReLU's upsampled activations would otherwise be kept for every layer (an edit step of StyleGAN3-T
        # at 256 px peaked at 8.4 GB, 6.2x StyleGAN2's; recomputed 2.7 GB), for one more forward pass per step.
        self.recompute_in_backward = True

        # Cutoffs and minimum stopbands grow geometrically to the last layers, which sit at the image's Nyquist rate.
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels
        if channels.min() < 1:
            raise NetworkConfigError(f"SynthesisNetwork: channel_base={channel_base} leaves a layer without channels")

        self.input = SynthesisInput(w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(sampling_rates[idx] * 2**num_fp16_res > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx],
                conv_kernel=conv_kernel, filter_size=filter_size, lrelu_upsampling=lrelu_upsampling,
                use_radial_filters=use_radial_filters, conv_clamp=conv_clamp, magnitude_ema_beta=magnitude_ema_beta,
            )
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def set_transform(self, translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> None:
        """Translate (in the input's coordinate units) and rotate (degrees) every image this network renders from now on."""
        with torch.no_grad():
            self.input.transform.copy_(input_transform(translate, rotate))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False,
                transforms: torch.Tensor | None = None, **_ignored: Any) -> torch.Tensor:
        """Image in about [-1, 1] (not clamped); `transforms` [N, 3, 3] (input_transform of each image) replaces the
        set_transform one per image. noise_mode and force_fp32 are accepted for StyleGAN2's signature: StyleGAN3
        has no noise inputs and computes in fp32."""
        if noise_mode not in NOISE_MODES:
            raise NetworkConfigError(f"SynthesisNetwork: noise_mode={noise_mode!r} is not one of {NOISE_MODES}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise NetworkConfigError(f"SynthesisNetwork: ws must have shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        if transforms is not None and tuple(transforms.shape) != (len(ws[0]), 3, 3):
            raise NetworkConfigError(f"SynthesisNetwork: transforms must have shape [{len(ws[0])}, 3, 3], got {tuple(transforms.shape)}")
        x = self.input(ws[0], transforms)
        for name, w in zip(self.layer_names, ws[1:]):
            layer = getattr(self, name)
            if self.recompute_in_backward and torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
                x = torch.utils.checkpoint.checkpoint(layer, x, w, use_reentrant=False)
            else:
                x = layer(x, w)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}, "
                f"margin_size={self.margin_size}")


# StyleGAN3's MappingNetwork defaults where they differ from StyleGAN2's (NVlabs/stylegan3 networks_stylegan3.py).
MAPPING_DEFAULTS = {"num_layers": 2, "w_avg_beta": 0.998}


def settings(z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
             mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A StyleGAN3 generator's complete, JSON-able init kwargs; unknown options raise NetworkConfigError naming the known."""
    return {
        "family": FAMILY,
        "z_dim": z_dim,
        "c_dim": c_dim,
        "w_dim": w_dim,
        "img_resolution": img_resolution,
        "img_channels": img_channels,
        "mapping_kwargs": _effective_kwargs(MappingNetwork, {**MAPPING_DEFAULTS, **(mapping_kwargs or {})},
                                            skip=("z_dim", "c_dim", "w_dim", "num_ws")),
        "synthesis_kwargs": _effective_kwargs(SynthesisNetwork, synthesis_kwargs or {}, skip=("w_dim", "img_resolution", "img_channels")),
    }


class Generator(MappedGenerator):
    """StyleGAN3 generator: StyleGAN2's mapping (z, c -> ws) then the alias-free synthesis (ws -> image)."""

    def __init__(
        self,
        z_dim: int,                                     # Input latent (Z) dimensionality.
        c_dim: int,                                     # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim: int,                                     # Intermediate latent (W) dimensionality.
        img_resolution: int,                            # Output resolution.
        img_channels: int,                              # Number of output color channels.
        mapping_kwargs: dict[str, Any] | None = None,   # Arguments for stylegan2.networks.MappingNetwork.
        synthesis_kwargs: dict[str, Any] | None = None,  # Arguments for SynthesisNetwork.
        family: str = FAMILY,                           # Always 'stylegan3': recorded so that saved settings say which network.
    ):
        if family != FAMILY:
            raise NetworkConfigError(f"networks_stylegan3.Generator: family={family!r}, expected {FAMILY!r}")
        # Checked and completed before anything is built, so that a typo fails with the allowed names.
        init_kwargs = settings(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
        super().__init__(init_kwargs, SynthesisNetwork, synthesis_kwargs or {}, init_kwargs["mapping_kwargs"])
