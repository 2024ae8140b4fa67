"""What an edit aims at: a sound, optionally with a text, turned into one direction in CLIP space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from sgsim.audio import check_not_silent, load_centred_window, rms_dbfs
from sgsim.errors import SgsimError

AudioSource = Union[str, Path, tuple[Union[np.ndarray, torch.Tensor], int]]

# Loudness-scaled strength: the strength is multiplied by the clip's perceived loudness relative to a
# clip at REFERENCE_DBFS RMS. Perceived loudness doubles about every 10 dB (Stevens' sone scale), so the
# scale is 2^((level - reference) / 10): -20 dBFS gives 1, -30 dBFS 0.5, -10 dBFS 2. The shared sample
# sounds lie between -36 and -14 dBFS; the clamp keeps near-silent or clipped clips from cancelling or
# overshooting the edit.
REFERENCE_DBFS = -20.0
LOUDNESS_SCALE_RANGE = (0.25, 2.0)


@dataclass(frozen=True)
class Target:
    """One edit target: a sound (file path or (waveform, sample_rate)), a text, or both.

    `weight` is how much the text counts against the sound (which counts 1) when they are mixed
    in CLIP space (mix='weighted'); mix='layers' edits towards each of them and mixes W+ rows.
    """

    audio: AudioSource | None = None
    text: str | None = None
    weight: float = 1.0

    @property
    def label(self) -> str:
        """A short human name: the sound's file name, else the text."""
        if isinstance(self.audio, (str, Path)):
            return Path(self.audio).name
        if self.audio is not None:
            return "waveform"
        return self.text or ""


@dataclass(frozen=True)
class TargetEmbedding:
    """A target's normalised embeddings and the loudness of its sound."""

    sound: torch.Tensor | None  # [embed_dim], L2-normalised
    text: torch.Tensor | None  # [embed_dim], L2-normalised
    loudness_dbfs: float | None  # RMS level of the sound as loaded, None for a text-only target

    def mixed(self, text_weight: float) -> torch.Tensor:
        """The normalised weighted sum of the sound and text directions."""
        parts = [e * w for e, w in ((self.sound, 1.0), (self.text, text_weight)) if e is not None]
        return F.normalize(torch.stack(parts).sum(0), dim=-1)


def loudness_scale(level_dbfs: float | None) -> float:
    """Strength multiplier of a sound at `level_dbfs`: its loudness relative to REFERENCE_DBFS, clamped."""
    if level_dbfs is None:
        return 1.0
    low, high = LOUDNESS_SCALE_RANGE
    return float(np.clip(2.0 ** ((level_dbfs - REFERENCE_DBFS) / 10.0), low, high))


def loudness_strengths(levels_dbfs: Sequence[Optional[float]], strengths: Sequence[float], loudness: bool) -> torch.Tensor:
    """Strengths applied per target [T, S]: each asked strength times the target's loudness scale when `loudness` is on
    (the one place an edit's or a video keyframe's strength meets its sound's level), else as asked."""
    scales = torch.tensor([loudness_scale(level) if loudness else 1.0 for level in levels_dbfs], dtype=torch.float64)
    return scales[:, None] * torch.tensor([float(s) for s in strengths], dtype=torch.float64)[None, :]


def _load_sound(audio: AudioSource, audio_encoder) -> tuple[torch.Tensor, int]:
    """Decode the part of a file the encoder looks at, or accept a waveform; refuse silence, which has no
    direction in CLIP space."""
    if isinstance(audio, (str, Path)):
        rate = audio_encoder.sample_rate
        waveform = load_centred_window(audio, rate, audio_encoder.mono, audio_encoder.input_seconds)
        name = str(audio)
    elif isinstance(audio, tuple) and len(audio) == 2:
        waveform, rate = audio
        name = "the waveform passed as a target"
    else:
        raise SgsimError(f"a target's audio must be a file path or (waveform, sample_rate), got {type(audio).__name__}")
    waveform = torch.as_tensor(waveform, dtype=torch.float32)
    check_not_silent(waveform, name)
    return waveform, int(rate)


@torch.no_grad()
def embed_target(target: Target, audio_encoder, clip) -> TargetEmbedding:
    """Embed a target's sound with the audio encoder and its text with the CLIP text tower."""
    if target.audio is None and not target.text:
        raise SgsimError("a target needs a sound, a text or both; got neither")
    sound = level = text = None
    if target.audio is not None:
        waveform, rate = _load_sound(target.audio, audio_encoder)
        sound = audio_encoder.encode(waveform[None], rate)[0].float()
        level = rms_dbfs(waveform)
    if target.text:
        text = F.normalize(clip.encode_text([target.text]).float(), dim=-1)[0]
    return TargetEmbedding(sound=sound, text=text, loudness_dbfs=level)
