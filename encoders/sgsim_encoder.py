"""The SGSIM audio encoder (Lee et al., CVPR 2022): log-mel image -> Conv2d(1, 3) -> ResNet -> OpenAI CLIP ViT-B/32 space.

The front end reproduces the reference's librosa + OpenCV preprocessing in torch, batched on the device,
because a preprocessing mismatch is what turns the released weights into noise. The front end and the
backbone builder are reusable by any log-mel classifier (the paper's supervised ResNet50 baseline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
import torchvision
from torch import nn

from encoders.base import AudioEncoder
from encoders.errors import EncoderError

# torchvision's ResNets share timm's key layout (conv1, bn1, layer1..4, fc) and arithmetic.
BACKBONES = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
}


class LogMelFrontEnd(nn.Module):
    """Waveform [B, T] at 44.1 kHz to the SGSIM network input [B, 1, 128, 512], as the reference prepares it.

    Reference (optimization/run_optimization.py with librosa 0.8.1 and OpenCV): mel power spectrogram,
    power_to_db(ref=max) / 80 + 1 over the whole clip, then crop or zero-pad to `frames` (padding comes
    after the dB step, so padded columns are 0, i.e. top_db below the clip's peak), cv2.resize to
    `image_rows` x `n_mels` with INTER_LINEAR, then a reshape (not a transpose) to [1, n_mels, image_rows].
    The reference crops long clips at random; this module takes the centred `frames` window instead.
    All clips of a batch share one length; embed clips of different lengths one at a time.
    """

    def __init__(
        self,
        sample_rate: int = 44100,  # Rate the waveform arrives at (librosa.load(sr=44100) in the reference).
        n_fft: int = 2048,  # FFT size and periodic Hann window length (librosa defaults).
        hop_length: int = 512,  # STFT hop in samples (librosa default).
        n_mels: int = 128,  # Slaney-scale, Slaney-normalised mel bands from 0 Hz to Nyquist.
        top_db: float = 80.0,  # Dynamic range kept below the clip's peak; also the divisor of the dB values.
        frames: int = 864,  # Spectrogram columns the network sees: 864 * 512 / 44100 = 10.03 s.
        image_rows: int = 512,  # Rows of the resized image; with n_mels columns, reshaped to [n_mels, image_rows].
        amin: float = 1e-10,  # Power floor of librosa.power_to_db; keeps an all-zero clip finite.
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.top_db = top_db
        self.frames = frames
        self.image_rows = image_rows
        self.amin = amin
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        mel_basis = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("mel_basis", mel_basis.T.contiguous(), persistent=False)  # [n_mels, n_fft // 2 + 1]

    @property
    def window_seconds(self) -> float:
        """Length of audio the `frames` columns cover: the centred stretch of a longer clip the network sees."""
        return self.frames * self.hop_length / self.sample_rate

    @property
    def min_samples(self) -> int:
        """Shortest clip the reflect-padded STFT accepts (n_fft // 2 + 1 samples)."""
        return self.n_fft // 2 + 1

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform -> [B, n_mels, 1 + T // hop] values in [0, 1]: power_to_db(ref=max) / top_db + 1."""
        if waveform.shape[-1] < self.min_samples:
            raise EncoderError(
                f"a clip of {waveform.shape[-1]} samples is too short for the SGSIM front end: it needs at least "
                f"{self.min_samples} samples ({self.min_samples / self.sample_rate * 1000:.0f} ms at {self.sample_rate} Hz)"
            )
        spectrum = torch.stft(
            waveform.float(),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",  # librosa 0.8.1's default, used by the reference; librosa >= 0.10 pads with zeros
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()
        with torch.autocast(waveform.device.type, enabled=False):  # the same features under autocast: only networks run reduced
            mel = torch.matmul(self.mel_basis, power)
        peak = mel.amax(dim=(-2, -1), keepdim=True)
        decibels = 10.0 * torch.log10(mel.clamp_min(self.amin)) - 10.0 * torch.log10(peak.clamp_min(self.amin))
        decibels = torch.maximum(decibels, decibels.amax(dim=(-2, -1), keepdim=True) - self.top_db)
        return decibels / self.top_db + 1.0

    def fit_frames(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Centre-crop or right-pad with zeros [B, n_mels, F] to [B, n_mels, frames]."""
        length = log_mel.shape[-1]
        if length >= self.frames:
            start = (length - self.frames) // 2
            return log_mel[..., start : start + self.frames]
        return F.pad(log_mel, (0, self.frames - length))

    def to_image(self, log_mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] -> [B, 1, n_mels, image_rows]: OpenCV INTER_LINEAR resize, then reshape."""
        resized = F.interpolate(
            log_mel[:, None], size=(self.image_rows, self.n_mels), mode="bilinear", align_corners=False, antialias=False
        )
        return resized.reshape(log_mel.shape[0], 1, self.n_mels, self.image_rows)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform at `sample_rate` -> [B, 1, n_mels, image_rows] network input."""
        return self.to_image(self.fit_frames(self.log_mel(waveform)))

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, n_mels={self.n_mels}, "
            f"top_db={self.top_db}, frames={self.frames}, image_rows={self.image_rows}"
        )


def build_backbone(name: str, num_outputs: int) -> nn.Module:
    """A randomly initialised ResNet (timm/torchvision key layout) whose fc has `num_outputs` outputs."""
    if name not in BACKBONES:
        raise EncoderError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](weights=None, num_classes=num_outputs)


class SgsimEncoder(AudioEncoder):
    """SGSIM's audio encoder: LogMelFrontEnd -> Conv2d(1, 3, 3x3, no padding) -> ResNet with fc -> 512.

    State-dict keys `conv.*` and `feature_extractor.*`, as in the released resnet18_57.pth.
    """

    sample_rate = 44100
    embed_dim = 512
    mono = True

    def __init__(
        self,
        backbone: str = "resnet18",  # "resnet18" (released weights) or "resnet50" (the paper's variant).
        front_end: dict[str, int] | None = None,  # LogMelFrontEnd overrides (a world's short clips); None = the released preprocessing
    ):
        super().__init__()
        self.front_end = LogMelFrontEnd(sample_rate=self.sample_rate, **(front_end or {}))
        self.conv = nn.Conv2d(1, 3, kernel_size=3)
        self.feature_extractor = build_backbone(backbone, self.embed_dim)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform at 44.1 kHz -> unnormalised [B, 512] embeddings."""
        return self.embed_image(self.front_end(waveform))

    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, 128, 512] front-end output -> unnormalised [B, 512] embeddings (the reference network)."""
        return self.feature_extractor(self.conv(image))
