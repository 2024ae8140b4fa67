"""Loss weights per kind of generator, as data: faces keep their identity, scenes and paintings may change more.

The preset follows what the generator is, not how it was named on the command line: its manifest name (also
when given as the cached file or a file with a recorded checksum), else the training set its file names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

from sgsim.errors import SgsimError


@dataclass(frozen=True)
class EditPreset:
    """Default loss weights of one family of generators; every value can be overridden per edit."""

    lambda_latent: float  # weight of ||w - w_src||^2, the sum of squares over W+ (SGSIM's lambda_similarity)
    lambda_id: float  # weight of the ArcFace identity loss; 0 never loads the identity network
    extra: Mapping[str, float] = field(default_factory=dict)  # weights of further loss terms, by name (sgsim.losses)

    @property
    def weights(self) -> dict[str, float]:
        """Every loss term's weight by name: the CLIP term counts 1, the others relative to it."""
        return {"clip": 1.0, "latent": self.lambda_latent, "id": self.lambda_id, **self.extra}


# SGSIM paper, section 4 / docs/reference.md#loss-weights: FFHQ 0.008 and 0.004; LSUN (and art) 0.002 and 0.
FACES = EditPreset(lambda_latent=0.008, lambda_id=0.004)
SCENES = EditPreset(lambda_latent=0.002, lambda_id=0.0)
# The shapes world's (sgsim world build): chosen from scripts/bench_world.py --part curves, where the judge scores
# every edit (README "The shapes world").
SHAPES_WORLD = EditPreset(lambda_latent=0.002, lambda_id=0.0)

# The presets by name (preset="ffhq", sgsim edit --preset ffhq).
PRESETS: dict[str, EditPreset] = {
    "ffhq": FACES,
    "landscape": SCENES,
    "wikiart": SCENES,
    "shapes": SHAPES_WORLD,
}

# What a generator draws (its manifest entry's domain) -> its preset. Every face generator keeps the identity;
# a domain without a preset (animals, cars) gets DEFAULT_PRESET, with a notice.
DOMAIN_PRESETS: dict[str, str] = {
    "faces": "ffhq",
    "faces-unaligned": "ffhq",  # StyleGAN3's FFHQ-U and MetFaces-U: faces anywhere in the frame, at any angle
    "scenes": "landscape",
    "art": "wikiart",
}

# A word in the training set's name a generator file records (NVIDIA's training_set_kwargs path, kept by
# `sgsim weights convert`) -> preset: FFHQ, MetFaces and CelebA-HQ are aligned human faces.
DATASET_PRESETS: dict[str, str] = {
    "ffhq": "ffhq",
    "metfaces": "ffhq",
    "celeba": "ffhq",
    "shapes world": "shapes",  # the generator of `sgsim world build shapes` (sgsim.worlds.build.DATASET)
}

# A generator that is none of the above: the scene weights, because they need no identity network and suit
# any domain; pass preset="ffhq" (or lambda_id) for a face model.
DEFAULT_PRESET = SCENES
DEFAULT_PRESET_NAME = "landscape"


FACE_PRESET = "ffhq"  # the preset of every generator of human faces
UNALIGNED_DOMAINS = frozenset({"faces-unaligned"})  # face domains whose photos are not FFHQ-aligned before inversion


@dataclass(frozen=True)
class GeneratorKind:
    """What a generator is, as far as editing cares: the preset of its domain (None: not recognised) and why."""

    preset: Optional[str]
    reason: str
    aligned: bool = True  # for a face generator: trained on FFHQ-aligned faces (False: FFHQ-U, MetFaces-U)

    @property
    def face(self) -> bool:
        """Trained on human faces (FFHQ, MetFaces, CelebA-HQ and their unaligned kin): the identity is kept."""
        return self.preset == FACE_PRESET

    @property
    def aligns_photos(self) -> bool:
        """Its photos are FFHQ-aligned before inversion: a face generator trained on aligned faces."""
        return self.face and self.aligned


def generator_kind(name: object, metadata: Optional[Mapping[str, str]] = None) -> GeneratorKind:
    """The one answer to "what is this generator", which presets and face alignment both read: by its manifest name
    (`name`; a path or an object is not a name) and the domain its manifest entry gives, else by the training set its
    file names (G.metadata["dataset"])."""
    from checkpoints.manifest import entry, is_known

    name = str(name) if isinstance(name, (str, Path)) else None
    domain = entry(name).domain if name is not None and is_known(name) else None
    if domain in DOMAIN_PRESETS:
        return GeneratorKind(DOMAIN_PRESETS[domain], f"the generator is the manifest's {name!r}", domain not in UNALIGNED_DOMAINS)
    dataset = (metadata or {}).get("dataset", "")
    for word, chosen in DATASET_PRESETS.items():
        if word in dataset.lower():
            return GeneratorKind(chosen, f"the generator's file says it was trained on {dataset!r}")
    what = f"no preset for the generator {name!r}" if name else "the generator is not recognised"
    details = [f"it draws {domain}"] if domain else []
    details.append(f"trained on {dataset!r}" if dataset else "its file names no training set")
    return GeneratorKind(None, f"{what} ({'; '.join(details)})")


@dataclass(frozen=True)
class PresetChoice:
    """The preset an Editor uses, its name (None for an EditPreset passed in) and why it was chosen, in words."""

    name: Optional[str]
    preset: EditPreset
    reason: str
    recognised: bool = True  # False: neither asked for nor recognised, DEFAULT_PRESET stands in (worth a notice)


def preset_choice(preset: Union[str, EditPreset, PresetChoice, None], generator: object,
                  metadata: Optional[Mapping[str, str]] = None) -> PresetChoice:
    """The preset asked for (a name in PRESETS or an EditPreset), else the one of the generator's manifest name
    (`generator` as a name; a path or an object is not a name), else the one of the training set named in
    `metadata` (G.metadata["dataset"]), else DEFAULT_PRESET."""
    if isinstance(preset, PresetChoice):
        return preset
    if isinstance(preset, EditPreset):
        return PresetChoice(None, preset, "passed as an EditPreset")
    if preset is not None:
        if preset not in PRESETS:
            raise SgsimError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} or pass an EditPreset")
        return PresetChoice(preset, PRESETS[preset], f"preset {preset!r} was asked for")
    kind = generator_kind(generator, metadata)
    if kind.preset is not None:
        return PresetChoice(kind.preset, PRESETS[kind.preset], kind.reason)
    return PresetChoice(DEFAULT_PRESET_NAME, DEFAULT_PRESET,
                        f"{kind.reason}: scene weights without the identity loss; pass preset='ffhq' for a face model", recognised=False)


def choose_preset(preset: Union[str, EditPreset, None], generator: object,
                  metadata: Optional[Mapping[str, str]] = None) -> EditPreset:
    """The EditPreset of preset_choice."""
    return preset_choice(preset, generator, metadata).preset
