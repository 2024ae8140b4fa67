"""Text prompts that turn a class name into what the CLIP text tower reads, and the class embeddings built from them."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError

# Prompt sets for zero-shot classification. "bare" is AudioCLIP's protocol (REFERENCE.md section 2); the
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


@torch.no_grad()
def class_embeddings(clip, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """[K, D] unit text embeddings of the classes: each the renormalised mean over the templates."""
    per_template = [clip.encode_text([template.format(class_text(label)) for label in labels]) for template in templates]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)
