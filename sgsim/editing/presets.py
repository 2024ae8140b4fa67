"""Loss weights per generator, as data: faces keep their identity, scenes and paintings may change more."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from sgsim.errors import SgsimError


@dataclass(frozen=True)
class EditPreset:
    """Default loss weights of one family of generators; every value can be overridden per edit."""

    lambda_latent: float  # weight of ||w - w_src||^2, the sum of squares over W+ (SGSIM's lambda_similarity)
    lambda_id: float  # weight of the ArcFace identity loss; 0 never loads the identity network


# SGSIM paper, section 4 / docs/reference.md#loss-weights: FFHQ 0.008 and 0.004; LSUN (and art) 0.002 and 0.
FACES = EditPreset(lambda_latent=0.008, lambda_id=0.004)
SCENES = EditPreset(lambda_latent=0.002, lambda_id=0.0)

# Keyed by checkpoints-manifest name of the generator.
PRESETS: dict[str, EditPreset] = {
    "ffhq": FACES,
    "landscape": SCENES,
    "wikiart": SCENES,
}

# A generator loaded from a path or passed as an object: the scene weights, because they need no
# identity network and suit any domain; pass preset="ffhq" (or lambda_id) for a face model.
DEFAULT_PRESET = SCENES


def choose_preset(preset: Union[str, EditPreset, None], generator: object) -> EditPreset:
    """The preset asked for (a name in PRESETS or an EditPreset), else the one of the generator's manifest
    name, else DEFAULT_PRESET (a generator passed as a path or an object)."""
    if isinstance(preset, EditPreset):
        return preset
    if preset is not None:
        if preset not in PRESETS:
            raise SgsimError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} or pass an EditPreset")
        return PRESETS[preset]
    name = generator if isinstance(generator, (str, Path)) else None
    return PRESETS.get(str(name), DEFAULT_PRESET)
