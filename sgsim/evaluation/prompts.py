"""Text prompts that turn a class name into what the CLIP text tower reads, and the class embeddings built from them."""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError
from sgsim.evaluation.embeddings import EmbeddingCache

# Prompt sets for zero-shot classification. "bare" is AudioCLIP's protocol (docs/reference.md#audioclip); the
# ensemble averages several phrasings, as CLIP's own zero-shot evaluation does.
PROMPT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "bare": ("{}",),
    "sound": ("the sound of {}",),
    "ensemble": (
        "{}",
        "the sound of {}",
        "a sound of {}",
        "a recording of {}",
        "the sound of a {}",
        "a clip of {} sounds",
    ),
}


def class_text(label: str) -> str:
    """A dataset's class name as words: ESC-50's `crackling_fire` -> `crackling fire`."""
    return label.replace("_", " ").strip()


def templates_for(name: str) -> tuple[str, ...]:
    """The templates of a prompt set, or an error listing the sets that exist."""
    if name not in PROMPT_TEMPLATES:
        raise SgsimError(f"unknown prompt set {name!r}; choose one of {', '.join(PROMPT_TEMPLATES)}")
    return PROMPT_TEMPLATES[name]


def text_sha256(text: str) -> str:
    """Hex sha256 of a text: its key in an embedding cache."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@torch.no_grad()
def encode_texts(clip, texts: Sequence[str], cache: EmbeddingCache | None = None) -> torch.Tensor:
    """[N, D] unit CLIP text embeddings; with a cache, only texts it has not seen go through the text tower."""
    found = {}
    if cache is not None:
        for text in set(texts):
            vector = cache.get(text_sha256(text))
            if vector is not None:
                found[text] = torch.from_numpy(vector)
    missing = sorted(set(texts) - set(found))
    if missing:
        for text, vector in zip(missing, clip.encode_text(missing).float().cpu()):
            found[text] = vector
            if cache is not None:
                cache.put(text_sha256(text), vector.numpy())
    return torch.stack([found[text] for text in texts])


def class_embeddings(clip, labels: Sequence[str], templates: Sequence[str], cache: EmbeddingCache | None = None) -> torch.Tensor:
    """[K, D] unit text embeddings of the classes: each the renormalised mean over the templates."""
    per_template = [encode_texts(clip, [template.format(class_text(label)) for label in labels], cache) for template in templates]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)
