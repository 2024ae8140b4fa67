"""Every audio encoder the toolkit knows, as data: name -> how to build it, which weights, which CLIP space.

Adding an encoder is adding an entry. Builders are import paths resolved only when that encoder is
built, so listing encoders imports no model code.
"""

from __future__ import annotations

import importlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

import checkpoints
from encoders.base import AudioEncoder
from encoders.clip import ClipModel, load_clip
from encoders.errors import EncoderError
from encoders.strict_load import unwrap_state_dict

@dataclass(frozen=True)
class EncoderInfo:
    """One registered audio encoder: everything the toolkit knows about it, declared once."""

    name: str  # registry name, used on the command line, in results and in messages
    description: str  # one line for `sgsim encoders list`
    builder: str | Callable[..., AudioEncoder]  # "module:attribute" (imported on build) or the callable itself
    weights: str | None  # checkpoints manifest name of the released weights; None: only checkpoint= works
    clip_model: str  # open_clip model name of the CLIP space the embeddings live in
    clip_weights: str  # manifest name of that CLIP model's weights (AudioCLIP: the towers in its own file)
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # passed to the builder


def _registry(*infos: EncoderInfo) -> dict[str, EncoderInfo]:
    """Name -> entry, each name given once (in its entry)."""
    return {info.name: info for info in infos}


ENCODERS: dict[str, EncoderInfo] = _registry(
    EncoderInfo(
        name="sgsim-resnet18",
        description="SGSIM (CVPR 2022) log-mel ResNet18, the released resnet18_57.pth; OpenAI CLIP ViT-B/32 space",
        builder="encoders.sgsim_encoder:SgsimEncoder",
        kwargs={"backbone": "resnet18"},
        weights="sgsim-resnet18",
        clip_model="ViT-B-32-quickgelu",
        clip_weights="clip-vit-b-32",
    ),
    EncoderInfo(
        name="sgsim-resnet50",
        description="SGSIM recipe with a ResNet50 backbone; no published weights: pass a checkpoint from `sgsim train-encoder`",
        builder="encoders.sgsim_encoder:SgsimEncoder",
        kwargs={"backbone": "resnet50"},
        weights=None,
        clip_model="ViT-B-32-quickgelu",
        clip_weights="clip-vit-b-32",
    ),
    EncoderInfo(
        name="audioclip-partial",
        description="AudioCLIP ESResNeXt-fbsp audio head aligned to vanilla OpenAI CLIP RN50 (partial training)",
        builder="encoders.audioclip:AudioClipEncoder",
        kwargs={"variant": "partial"},
        weights="audioclip-partial",
        clip_model="RN50-quickgelu",
        clip_weights="audioclip-partial",
    ),
    EncoderInfo(
        name="audioclip-full",
        description="AudioCLIP with all towers fine-tuned (full training); use its own CLIP image and text towers",
        builder="encoders.audioclip:AudioClipEncoder",
        kwargs={"variant": "full"},
        weights="audioclip-full",
        clip_model="RN50-quickgelu",
        clip_weights="audioclip-full",
    ),
    EncoderInfo(
        name="wav2clip",
        description="Wav2CLIP ResNet18 on a 16 kHz log spectrogram, distilled into OpenAI CLIP ViT-B/32 image space",
        builder="encoders.wav2clip:Wav2ClipEncoder",
        weights="wav2clip",
        clip_model="ViT-B-32-quickgelu",
        clip_weights="clip-vit-b-32",
    ),
)


def available() -> list[EncoderInfo]:
    """Every registered audio encoder, in registry order."""
    return list(ENCODERS.values())


def registered(name: str) -> EncoderInfo:
    """The registry entry for `name`, or an error listing the names that exist."""
    if name not in ENCODERS:
        raise EncoderError(f"unknown audio encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


def _builder(info: EncoderInfo) -> Callable[..., AudioEncoder]:
    """Import the builder of a registered encoder."""
    if callable(info.builder):
        return info.builder
    module_name, _, attribute = info.builder.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise EncoderError(f"audio encoder {info.name!r} is registered but {info.builder} cannot be imported: {error}") from error


def build_audio_encoder(name: str) -> AudioEncoder:
    """A registered encoder with random weights (for training or for loading a state dict yourself)."""
    info = registered(name)
    encoder = _builder(info)(**info.kwargs)
    encoder.info = info  # name, CLIP space and weights come from here, so variants of one class differ
    return encoder


def _load_failure(error: Exception) -> str:
    """The telling line of a torch.load error (torch wraps the unpickler's reason in paragraphs of advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return f"{type(error).__name__}: {(telling or lines or ['no detail'])[0]}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from a torch file without executing anything in it (weights_only), unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"{path}: no such checkpoint file; check the path or run `sgsim weights download`")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        detail = _load_failure(error)
        if isinstance(error, pickle.UnpicklingError) and "GLOBAL" in detail:
            raise EncoderError(
                f"{path} holds Python objects beyond tensors, which weights_only loading refuses to execute "
                f"({detail}); pass a plain state dict saved with torch.save(model.state_dict())"
            ) from error
        raise EncoderError(
            f"{path} is not a readable PyTorch checkpoint (empty, truncated or another format: {detail}); download it again"
        ) from error
    content = unwrap_state_dict(content)
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise EncoderError(f"{path} is a PyTorch file but not a state dict of tensors; pass the encoder's weights file")
    return content


def load_audio_encoder(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> AudioEncoder:
    """A registered encoder with its weights, in eval mode on `device`.

    `checkpoint` None loads the released weights from the cache (checkpoints.resolve raises
    MissingWeightsError with download instructions when they are absent); a path loads that file.
    """
    info = registered(name)
    if checkpoint is None:
        if info.weights is None:
            raise EncoderError(
                f"audio encoder {name!r} has no published weights; pass checkpoint=PATH (a file from `sgsim train-encoder`)"
            )
        checkpoint = checkpoints.resolve(info.weights)
    state_dict = read_state_dict(checkpoint)
    encoder = build_audio_encoder(name)
    encoder.load_official(state_dict, source=str(checkpoint))
    return encoder.to(device).eval()


def load_clip_for(
    encoder: AudioEncoder | str,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    *,
    clip_model: str | None = None,
) -> ClipModel:
    """The CLIP model whose space `encoder` (an encoder or its registry name) embeds into, frozen, on `device`.

    `weights` is a manifest name or a path (None: the CLIP weights registered for the encoder), resolved
    through checkpoints.resolve. `clip_model` trains or evaluates against another open_clip model instead,
    with OpenAI's weights for it unless `weights` says otherwise.
    """
    info = registered(encoder) if isinstance(encoder, str) else encoder.registration()
    own_model, own_weights = info.clip_model, info.clip_weights
    if clip_model is not None and clip_model != own_model:
        own_model, own_weights = clip_model, "openai"
    return load_clip(own_model, pretrained=own_weights if weights is None else weights, device=device)
