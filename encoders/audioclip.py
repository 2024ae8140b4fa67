"""AudioCLIP's audio head (Guzhov et al. 2021): a learnable Fourier filterbank and an attention-gated
ResNeXt-50 whose pooled features are projected into OpenAI CLIP RN50 space.

Written from the description of AndreyGuzhov/AudioCLIP (model/esresnet/*, model/audioclip.py); parity
with that code is pinned by tests/encoders/test_audioclip.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import Bottleneck, ResNet

from encoders.base import AudioEncoder
from encoders.errors import EncoderError

SAMPLE_RATE = 44100
FRAME_LENGTH = 1654  # samples per analysis frame (AudioCLIP's win_length)
HOP_LENGTH = 561
N_FFT = 2048  # each windowed frame is zero-padded, centred, to this length
N_BINS = N_FFT // 2 + 1  # one-sided filterbank outputs
N_BANDS = 3  # the 1025 bins become 3 image channels of 341 rows; the top 2 bins are dropped
BAND_HEIGHT = N_BINS // N_BANDS
INT16_SCALE = 32768.0  # AudioCLIP was trained on librosa float samples * 32768
LOG_FLOOR = 1e-18  # power values <= 0 are replaced by this before 10*log10 (AudioCLIP's log10_eps)
FBSP_EPS = 1e-8  # added to the kernel's time axis and to m, as in AudioCLIP's LinearFBSP
EMBED_DIM = 1024
FEATURE_DIM = 2048

# Attention2d gates after layer1..4 and after pooling: (in, out channels, depthwise kernel, padding).
GATES = (
    (64, 256, (3, 1), (1, 0)),
    (256, 512, (1, 5), (0, 2)),
    (512, 1024, (3, 1), (1, 0)),
    (1024, 2048, (1, 5), (0, 2)),
    (2048, 2048, (3, 5), (1, 2)),
)

# The released trainings; the network is the same, the registry names each one's weights and CLIP towers.
VARIANTS = ("partial", "full")


def blackman_harris(length: int) -> torch.Tensor:
    """Periodic 4-term Blackman-Harris window (scipy.signal.get_window('blackmanharris', fftbins=True))."""
    phase = 2 * math.pi * torch.arange(length, dtype=torch.float64) / length
    window = 0.35875 - 0.48829 * torch.cos(phase) + 0.14128 * torch.cos(2 * phase) - 0.01168 * torch.cos(3 * phase)
    return window.float()


def int16_to_unit_range(samples: torch.Tensor) -> torch.Tensor:
    """Map int16-scale samples [-32768, 32767] linearly onto [-1, 1], in AudioCLIP's operation order."""
    return (samples + 32768.0) * 2.0 / 65535.0 - 1.0


def frame_signal(signal: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Cut [N, T] into [N, frames, frame_length] frames; the last partial frame is completed by zeros
    split evenly before and after the signal (AudioCLIP's utils.transforms.frame_signal)."""
    length = signal.shape[-1]
    num_frames = 1 if length <= frame_length else 1 + math.ceil((length - frame_length) / hop_length)
    padding = max(0, (num_frames - 1) * hop_length + frame_length - length)
    signal = F.pad(signal, (padding // 2, padding - padding // 2))
    return signal.unfold(-1, frame_length, hop_length)


class LinearFBSP(nn.Module):
    """Learnable Fourier B-spline filterbank: complex filters sqrt(fb) * sinc(fb t / m)^m * exp(-i fc t).

    With m = 0, fb = 1, fc = k (the initial values) filter k is the k-th DFT basis vector; training
    moves each filter's centre (fc), bandwidth (fb) and window shape (m).
    """

    def __init__(self, out_features: int = N_BINS):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(out_features))
        self.fb = nn.Parameter(torch.ones(out_features))
        self.fc = nn.Parameter(torch.arange(out_features, dtype=torch.float32))

    def filters(self, in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary weights [out, in_features], divided by sqrt(in_features) (AudioCLIP's normalized=True).

        Written as real arithmetic in the reference's order: the silent stretches of a clip sit at the
        float32 noise floor (-150 dB and below), where a different rounding moves the dB values visibly.
        """
        t = math.pi * torch.linspace(-1.0, 1.0, in_features, device=self.m.device) + FBSP_EPS
        m, fb, fc = self.m[:, None], self.fb[:, None], self.fc[:, None]
        x = fb * t / (m + FBSP_EPS)
        sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)
        # sinc^m for a real m, as the reference's complex power: magnitude |sinc|^m, phase m*pi where sinc < 0.
        # (At an exact zero of the sinc the reference computes 0 * log(0) = NaN; this gives the limit, 0.)
        magnitude = (sinc * sinc) ** (0.5 * m)
        phase = m * torch.where(sinc < 0, math.pi, 0.0)
        window_real, window_imag = magnitude * torch.cos(phase), magnitude * torch.sin(phase)
        kernel_real, kernel_imag = torch.cos(fc * t), -torch.sin(fc * t)
        scale = fb.sqrt()
        real = scale * (window_real * kernel_real - window_imag * kernel_imag)
        imag = scale * (window_real * kernel_imag + window_imag * kernel_real)
        return real / in_features**0.5, imag / in_features**0.5

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Power of each filter's response to real frames [..., in] -> [..., out]."""
        real, imag = self.filters(frames.shape[-1])
        return F.linear(frames, real) ** 2 + F.linear(frames, imag) ** 2

    def extra_repr(self) -> str:
        return f"out_features={self.m.numel()}"


class Attention2d(nn.Module):
    """Sigmoid gate for a stage's output, computed from the stage's input max-pooled to the output size."""

    def __init__(
        self,
        in_channels: int,  # channels of the stage input the gate looks at
        out_channels: int,  # channels of the stage output it gates
        kernel_size: tuple[int, int],  # depthwise kernel (frequency, time)
        padding: tuple[int, int],
    ):
        super().__init__()
        self.conv_depth = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels)
        self.conv_point = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.adaptive_max_pool2d(x, size)
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(x))))


class ESResNeXtFBSP(ResNet):
    """AudioCLIP's audio network: waveform -> FBSP log-power bands -> gated ResNeXt-50 32x4d -> 1024-d.

    Attribute names follow the released checkpoint: its `audio.*` keys are this module's keys under
    `AudioClipEncoder.audio`, so loading renames nothing.
    """

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=embed_dim, groups=32, width_per_group=4)
        self.register_buffer("window", blackman_harris(FRAME_LENGTH))
        self.fbsp = LinearFBSP(N_BINS)
        for index, (in_channels, out_channels, kernel, padding) in enumerate(GATES, start=1):
            self.add_module(f"att{index}", Attention2d(in_channels, out_channels, kernel, padding))

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, C, T] float samples in [-1, 1] at 44.1 kHz -> dB bands [B, C, 3, 341, frames], in float32 also under
        autocast: the filterbank is a matmul whose quiet bins cancel, and in bfloat16 they lose their dB values."""
        batch, channels, _ = waveform.shape
        signal = int16_to_unit_range(waveform.reshape(batch * channels, -1) * INT16_SCALE)
        frames = frame_signal(signal, FRAME_LENGTH, HOP_LENGTH) * self.window
        padding = N_FFT - FRAME_LENGTH
        frames = F.pad(frames, (padding // 2, padding - padding // 2))
        with torch.autocast(waveform.device.type, enabled=False):
            power = self.fbsp(frames).transpose(-1, -2)[:, : N_BANDS * BAND_HEIGHT]
        power = torch.where(power > 0, power, torch.full_like(power, LOG_FLOOR))
        return 10.0 * torch.log10(power).reshape(batch, channels, N_BANDS, BAND_HEIGHT, -1)

    def pooled_features(self, bands: torch.Tensor) -> torch.Tensor:
        """dB bands [N, 3, 341, frames] -> gated, average-pooled features [N, 2048]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(bands))))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        for layer, gate in zip(stages, (self.att1, self.att2, self.att3, self.att4)):
            out = layer(x)
            x = out * gate(x, out.shape[-2:])
        pooled = self.avgpool(x)
        return torch.flatten(pooled * self.att5(x, pooled.shape[-2:]), 1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, embed_dim]: every channel through the network, pooled features summed, then projected."""
        bands = self.spectrogram(waveform)
        batch, channels = bands.shape[:2]
        features = self.pooled_features(bands.flatten(0, 1))
        return self.fc(features.reshape(batch, channels, -1).sum(dim=1))


class AudioClipEncoder(AudioEncoder):
    """AudioCLIP's audio head; its embeddings live in the space of the CLIP RN50 towers of the same file."""

    sample_rate = SAMPLE_RATE
    embed_dim = EMBED_DIM
    mono = False  # stereo files: each channel through the network, features summed

    def __init__(self, variant: str = "partial"):
        super().__init__()
        if variant not in VARIANTS:
            raise EncoderError(f"AudioCLIP variant {variant!r} does not exist; pass variant= one of {sorted(VARIANTS)}")
        self.variant = variant
        self.audio = ESResNeXtFBSP(EMBED_DIM)
        self.eval()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, C, T] float samples in [-1, 1] at 44.1 kHz -> unnormalised [B, 1024]."""
        return self.audio(waveform)

    def convert_official(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keep the `audio.*` tensors of the 861-key AudioCLIP file; the CLIP towers are the CLIP wrapper's.

        The file carries an empty `audio.fbsp.bias` (the filterbank is built without bias); it holds nothing
        and is dropped. A non-empty one would be a different model and stays, so the strict load rejects it.
        """
        return {
            key: value
            for key, value in state_dict.items()
            if key.startswith("audio.") and not (key == "audio.fbsp.bias" and value.numel() == 0)
        }

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, sample_rate={self.sample_rate}, embed_dim={self.embed_dim}"
