"""The interface every audio encoder shares: waveform in, L2-normalised embedding in a CLIP space out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from encoders.errors import EncoderError
from encoders.strict_load import load_strict

if TYPE_CHECKING:
    from encoders.registry import EncoderInfo


class AudioEncoder(nn.Module):
    """An audio encoder whose normalised output lives in the embedding space of one CLIP model.

    Subclasses set the architecture's class attributes, build their modules in `__init__` and
    implement `forward(waveform)`: a batch at `sample_rate` ([B, T], or [B, C, T] when `mono` is
    False) to unnormalised embeddings [B, embed_dim], preprocessing included, so it runs on the
    encoder's device. `convert_official` maps the authors' checkpoint keys to ours. Name, CLIP
    space and weights are not the class's: they come from the registry entry it was built from.
    """

    sample_rate: int = 44100
    embed_dim: int = 512
    mono: bool = True  # False: the encoder consumes every channel itself (AudioCLIP sums them)
    # The most audio a caller decodes for the encoder: a file up to this long is passed whole and embedded as
    # the encoder's authors embed it (any cropping is the encoder's own); a longer one is cut to its centred
    # `input_seconds`, with a warning. A cap on decoding, so an hour-long file stays cheap
    # (docs/encoders.md#the-decoding-cap).
    input_seconds: float = 60.0

    info: EncoderInfo | None = None  # the registry entry it was built from (set by encoders.registry.build_audio_encoder)

    def registration(self) -> EncoderInfo:
        """The registry entry this encoder was built from; an error for one constructed by hand."""
        if self.info is None:
            raise EncoderError(
                f"this {type(self).__name__} was built by hand, so its CLIP space is unknown; "
                f"build it with encoders.registry.build_audio_encoder(name) or load_audio_encoder(name)"
            )
        return self.info

    @property
    def name(self) -> str:
        """The registry name (the class name for an encoder built by hand), for results and messages."""
        return self.info.name if self.info is not None else type(self).__name__

    @property
    def clip_model(self) -> str:
        """open_clip model name of the CLIP space the embeddings live in."""
        return self.registration().clip_model

    @property
    def clip_weights(self) -> str:
        """Manifest name of the CLIP weights that go with this encoder."""
        return self.registration().clip_weights

    @property
    def device(self) -> torch.device:
        """The device the encoder's weights live on."""
        return next(self.parameters()).device

    def encode(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Embed a batch of clips ([T], [B, T] or [B, C, T] at any rate) as L2-normalised [B, embed_dim]."""
        waveform = torch.as_tensor(waveform, dtype=torch.float32, device=self.device)
        if waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() not in (2, 3):
            raise EncoderError(f"{self.name}: expected a waveform [T], [B, T] or [B, C, T], got shape {tuple(waveform.shape)}")
        if self.mono and waveform.dim() == 3:
            waveform = waveform.mean(dim=1)
        if not self.mono and waveform.dim() == 2:
            waveform = waveform[:, None]
        if not torch.isfinite(waveform).all():
            raise EncoderError(f"{self.name}: the waveform contains NaN or infinite samples; check how it was produced")
        if sample_rate != self.sample_rate:
            waveform = torchaudio.functional.resample(waveform, sample_rate, self.sample_rate)
        return F.normalize(self(waveform).float(), dim=-1)

    def convert_official(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map the authors' released state dict to this module's keys (identity unless overridden)."""
        return state_dict

    def load_official(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load the authors' (unwrapped) state dict strictly: a wrong or foreign file is an error, never a partial load."""
        load_strict(
            self,
            self.convert_official(state_dict),
            mismatch=f"{source} is not a {self.name} checkpoint",
            advice=f"pass the file released for {self.name}",
        )
