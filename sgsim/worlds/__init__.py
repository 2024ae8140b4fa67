"""Miniature worlds whose networks are trained by sgsim itself and whose edits a judge that is not CLIP can score.

`resolve_world(name)` turns a world's name into its bundled files (examples/worlds/<name>/) and registers its
CLIP config and audio encoder, so every command can load it offline; `sgsim world build` makes those files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sgsim.errors import SgsimError

WORLDS = ("shapes",)
BUNDLE_ROOT = Path(__file__).resolve().parents[2] / "examples" / "worlds"  # in the repository beside sgsim/
GENERATOR_FILE = "generator.safetensors"
CLIP_FILE = "clip.safetensors"
ENCODER_FILE = "encoder.pth"
ENCODER_NAME = "sgsim-resnet18-shapes"  # the SGSIM ResNet18 with a front end that sees 2.2 s (the words are short)
ENCODER_FRONT_END = {"frames": 192, "image_rows": 192}


class WorldError(SgsimError):
    """A world is unknown or not built."""


@dataclass(frozen=True)
class WorldFiles:
    """Where a built world's networks are, and the names they load under."""

    name: str
    root: Path
    generator: Path  # sgsim-stylegan2 safetensors (load_generator)
    clip: Path  # open_clip state dict as safetensors (load_clip(clip_model, pretrained=clip))
    encoder: Path  # SGSIM encoder state dict (load_audio_encoder(encoder_name, checkpoint=encoder))
    clip_model: str
    encoder_name: str


def world_files(root: str | os.PathLike, name: str = "shapes") -> WorldFiles:
    """The file layout of a world built into `root` (whether or not the files exist yet)."""
    from sgsim.worlds.clip_training import CLIP_MODEL

    root = Path(root)
    return WorldFiles(name, root, root / GENERATOR_FILE, root / CLIP_FILE, root / ENCODER_FILE, CLIP_MODEL, ENCODER_NAME)


def register_world() -> None:
    """Make the world's CLIP config known to open_clip and its audio encoder to sgsim's registry (idempotent)."""
    from encoders.registry import ENCODERS, EncoderInfo
    from sgsim.worlds.clip_training import CLIP_MODEL, register_clip_config

    register_clip_config()
    if ENCODER_NAME not in ENCODERS:
        ENCODERS[ENCODER_NAME] = EncoderInfo(
            name=ENCODER_NAME,
            description="SGSIM ResNet18 trained by `sgsim world build shapes` into the shapes world's CLIP (2.2 s window)",
            builder="encoders.sgsim_encoder:SgsimEncoder",
            kwargs={"backbone": "resnet18", "front_end": ENCODER_FRONT_END},
            weights=None,
            clip_model=CLIP_MODEL,
            clip_weights=str(BUNDLE_ROOT / "shapes" / CLIP_FILE),
        )


def resolve_world(name: str, root: str | os.PathLike | None = None) -> WorldFiles:
    """A world's bundled (or `root`'s) files, registered for loading; one clear error when it is not built."""
    if name not in WORLDS:
        raise WorldError(f"unknown world {name!r}; choose one of {', '.join(WORLDS)}")
    files = world_files(root or BUNDLE_ROOT / name, name)
    missing = [path.name for path in (files.generator, files.clip, files.encoder) if not path.is_file()]
    if missing:
        raise WorldError(f"the {name} world is not built in {files.root} (missing {', '.join(missing)}); "
                         f"run `sgsim world build {name} --out {files.root}`")
    register_world()
    return files
