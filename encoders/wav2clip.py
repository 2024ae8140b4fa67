"""Wav2CLIP (Wu et al. 2022): a log-spectrogram ResNet18 distilled into OpenAI CLIP ViT-B/32 image space.

Written from the description of descriptinc/lyrebird-wav2clip (wav2clip/model/*); parity with that code
is pinned by tests/encoders/test_wav2clip.py.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from encoders.base import AudioEncoder

SAMPLE_RATE = 16000
N_FFT = 512  # periodic Hann window of the same length, centred frames with reflect padding
HOP_LENGTH = 353
LOG_OFFSET = 1e-7  # log(power + 1e-7)
STD_EPS = 1e-9  # (x - mean) / (std + 1e-9)
EMBED_DIM = 512
DROPOUT = 0.1


class Wav2ClipResNet(ResNet):
    """Waveform -> standardised log power spectrogram -> ResNet18 with a 1-channel stem -> pooled 512-d.

    Attribute names follow the released checkpoint's `audio_encoder.*` keys (the window included).
    """

    def __init__(
        self,
        batch_statistics: bool = False,  # standardise by the whole batch (the reference) instead of per clip
    ):
        super().__init__(BasicBlock, [2, 2, 2, 2])
        del self.fc  # the reference network ends at the pooled features
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=N_FFT, hop_length=HOP_LENGTH, window_fn=torch.hann_window, power=2.0, center=True, pad_mode="reflect"
        )
        self.batch_statistics = batch_statistics

    def log_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, T] at 16 kHz -> standardised log power [B, 1, 257, frames].

        The reference standardises by the mean and std of the whole batch tensor, so a clip's embedding
        depends on the clips batched with it; by default each clip is standardised on its own, which
        equals the reference run on that clip alone. `batch_statistics=True` reproduces batched runs.
        """
        x = torch.log(self.spectrogram(waveform[:, None]) + LOG_OFFSET)
        if self.batch_statistics:
            return (x - x.mean()) / (x.std() + STD_EPS)
        dims = (1, 2, 3)
        return (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + STD_EPS)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.log_spectrogram(waveform)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def extra_repr(self) -> str:
        return f"batch_statistics={self.batch_statistics}"


class ProjectionHead(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear, mapping pooled audio features into CLIP image space."""

    def __init__(self, dim: int = EMBED_DIM, dropout: float = DROPOUT):
        super().__init__()
        self.sequential = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


class Wav2ClipEncoder(AudioEncoder):
    """Wav2CLIP's audio encoder with its audio transform, as the released Wav2CLIP.pt defines them."""

    sample_rate = SAMPLE_RATE
    embed_dim = EMBED_DIM
    mono = True

    def __init__(self, batch_statistics: bool = False):
        super().__init__()
        self.audio_encoder = Wav2ClipResNet(batch_statistics)
        self.audio_transform = ProjectionHead()
        self.eval()

    @property
    def batch_statistics(self) -> bool:
        """Whether clips are standardised by their batch's statistics (reference) or each on its own."""
        return self.audio_encoder.batch_statistics

    @batch_statistics.setter
    def batch_statistics(self, value: bool) -> None:
        self.audio_encoder.batch_statistics = value

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, T] float samples at 16 kHz -> unnormalised [B, 512]."""
        return self.audio_transform(self.audio_encoder(waveform))

    def convert_official(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keep the audio encoder and audio transform of the file; anything else it holds is not ours."""
        return {k: v for k, v in state_dict.items() if k.startswith(("audio_encoder.", "audio_transform."))}
