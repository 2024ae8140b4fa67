"""CLIP for guidance: texts and generator images to L2-normalised embeddings, with weights from local files only.

open_clip is imported only when a model is built, so `import encoders` stays cheap and an offline
user without cached weights hears so before any model code loads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import checkpoints
from checkpoints.containers import ContainerError, check_complete, refusal_line, sniff_container
from encoders.errors import EncoderError
from encoders.strict_load import load_strict, unwrap_state_dict

# Manifest names of OpenAI's own weights for the open_clip models that reproduce them (quick-GELU variants).
OPENAI_WEIGHTS = {"ViT-B-32-quickgelu": "clip-vit-b-32", "RN50-quickgelu": "clip-rn50"}

OPEN_CLIP_RANDOM_INIT = "No pretrained weights loaded"  # open_clip factory.create_model, logged before load_clip's own load
_log = logging.getLogger(__name__)

# OpenAI CLIP's image normalisation (openai/CLIP clip.py `_transform`; docs/reference.md#clip-normalisation).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Top-level CLIP parameters in OpenAI's (and open_clip's CLIP class) layout; AudioCLIP files hold these beside audio.*.
_CLIP_KEY_PREFIXES = ("visual.", "transformer.", "token_embedding.", "ln_final.")
_CLIP_KEYS = ("positional_embedding", "text_projection", "logit_scale")


class ClipModel(nn.Module):
    """A frozen open_clip CLIP model and its tokenizer, taking generator output in [-1, 1] at any resolution."""

    def __init__(
        self,
        model: nn.Module,  # an open_clip CLIP model (OpenAI layout: encode_text, encode_image, text_projection)
        tokenizer: Callable[[list[str]], torch.Tensor],  # texts -> token ids [N, context_length]
        mean: Sequence[float] = CLIP_MEAN,  # per-channel image mean the model was trained with
        std: Sequence[float] = CLIP_STD,  # per-channel image std the model was trained with
    ):
        super().__init__()
        self.model = model.eval().requires_grad_(False)  # guidance differentiates w.r.t. images, never CLIP itself
        self.tokenizer = tokenizer
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        projection = model.text_projection
        self.embed_dim = int(projection.shape[1] if isinstance(projection, torch.Tensor) else projection.out_features)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_open_clip(cls, model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor] | None = None) -> "ClipModel":
        """Wrap an already built open_clip model; the default tokenizer is CLIP's BPE at the model's context length."""
        if tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer

            tokenizer = SimpleTokenizer(context_length=model.context_length)
        return cls(model, tokenizer)

    @property
    def device(self) -> torch.device:
        """The device the CLIP weights live on."""
        return self.mean.device

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, embed_dim={self.embed_dim}"

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts as L2-normalised [N, embed_dim]."""
        if isinstance(texts, str) or not texts:
            raise EncoderError(f"encode_text takes a non-empty list of strings, got {texts!r}")
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Embed generator output (NCHW RGB in [-1, 1], any size) as L2-normalised [N, embed_dim]; differentiable."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise EncoderError(f"encode_image takes NCHW RGB images, got shape {tuple(images.shape)}")
        pixels = (images.to(self.device, torch.float32).clamp(-1, 1) + 1) / 2
        pixels = resize_and_center_crop(pixels, self.image_size)
        pixels = (pixels - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        return F.normalize(self.model.encode_image(pixels.to(dtype)).float(), dim=-1)


def resize_and_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Scale the short side to `size` and crop the centre square, as CLIP's own preprocessing does; differentiable.

    The resize is antialiased bicubic, the filter of the PIL resize CLIP was trained behind. The SGSIM
    and StyleCLIP references instead upsample x7 (nearest) and average-pool by size // 32: an exact box
    filter for sizes that are multiples of 32, but through a 49x larger intermediate (a 1024 px batch
    becomes 7168 px) and only for those sizes; antialiased bicubic needs neither.
    """
    height, width = images.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
        images = F.interpolate(images, size=new_size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (new_size[0] - size) // 2, (new_size[1] - size) // 2
        images = images[..., top : top + size, left : left + size]
    return images


def load_clip(name: str = "ViT-B-32-quickgelu", pretrained: str | os.PathLike = "openai", device: str | torch.device = "cpu") -> ClipModel:
    """Build the open_clip model `name` with weights from a local file: 'openai', a manifest name or a path.

    'openai' means the manifest's copy of OpenAI's weights for `name`. An AudioCLIP checkpoint for
    RN50-quickgelu gives its CLIP towers. Nothing is fetched: missing weights fail at once with instructions.
    """
    source = OPENAI_WEIGHTS.get(name) if str(pretrained) == "openai" else pretrained
    if source is None:
        raise EncoderError(f"no OpenAI weights are registered for {name!r} (known: {', '.join(OPENAI_WEIGHTS)}); pass pretrained=<file>")
    path = checkpoints.resolve(source)
    state_dict = _read_clip_state_dict(path)

    import open_clip

    if name not in open_clip.list_models():
        raise EncoderError(f"unknown open_clip model {name!r}; use one of {', '.join(OPENAI_WEIGHTS)} or another name from open_clip.list_models()")
    with _without_random_init_warning():
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    load_strict(model, state_dict, mismatch=f"{path} does not fit this CLIP model", advice="pass weights for this model name")
    _log.info("CLIP %s: every weight loaded strictly from %s", name, path)
    return ClipModel(model, open_clip.get_tokenizer(name)).to(device)


class _DropRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded ... initialized randomly": true only until load_clip reads
    the weights into the model a moment later, and read by users as "CLIP is random"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(OPEN_CLIP_RANDOM_INIT)


@contextlib.contextmanager
def _without_random_init_warning() -> Iterator[None]:
    """Build an open_clip model without its random-initialisation warning. open_clip logs through the root logger's
    module functions, which would also install a stderr handler (logging.basicConfig) when the root has none: a
    NullHandler stands in meanwhile so the application's logging stays as it was."""
    root = logging.getLogger()
    drop, placeholder = _DropRandomInitWarning(), logging.NullHandler()
    root.addFilter(drop)
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)
        root.removeFilter(drop)


def _torch_load(path: os.PathLike):
    """torch.load(weights_only=True) with its failures (a hostile pickle, a damaged zip) as one EncoderError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise EncoderError(f"{path} was refused by torch's weights-only loader (nothing from it was run): "
                           f"{refusal_line(error)}") from None
    except (RuntimeError, EOFError, ValueError, OSError, TypeError, OverflowError, RecursionError) as error:
        raise EncoderError(f"{path} is a truncated or corrupt torch.save file ({type(error).__name__}: "
                           f"{refusal_line(error)[:200]}); download it again") from None


def _read_clip_state_dict(path: os.PathLike) -> dict[str, torch.Tensor]:
    """The CLIP tensors of a safetensors or torch.save file; an AudioCLIP file contributes its CLIP keys only."""
    container = sniff_container(path)
    if container in ("safetensors", "torch-zip", "torch-legacy"):
        try:
            check_complete(path, container)
        except ContainerError as error:
            raise EncoderError(f"{path} is a truncated or corrupt {container} file ({error}); download it again") from None
    if container == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(path))
        except (SafetensorError, RuntimeError, ValueError, OSError) as error:
            raise EncoderError(f"{path} is a corrupt safetensors file ({str(error)[:200]}); download it again") from None
    elif container in ("torch-zip", "torch-legacy"):
        state_dict = _torch_load(path)
    elif container == "torchscript":
        raise EncoderError(
            f"{path} is a TorchScript archive (OpenAI's own .pt), which runs code when loaded; "
            f"use `sgsim weights download clip-vit-b-32` (or clip-rn50) for the same weights as safetensors"
        )
    else:
        raise EncoderError(f"{path} is not a CLIP checkpoint: its bytes are a {container} file, expected safetensors or torch.save")
    state_dict = unwrap_state_dict(state_dict)
    if not isinstance(state_dict, dict):
        raise EncoderError(f"{path} holds a {type(state_dict).__name__}, not a state dict of CLIP weights")
    if any(key.startswith("audio.") for key in state_dict):  # AudioCLIP: audio head + logit_scale_a* beside CLIP
        state_dict = {key: value for key, value in state_dict.items() if key.startswith(_CLIP_KEY_PREFIXES) or key in _CLIP_KEYS}
    return state_dict
