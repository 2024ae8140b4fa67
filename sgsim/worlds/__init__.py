"""Miniature worlds whose networks are trained by sgsim itself and whose edits a judge that is not CLIP can score.

`resolve_world(name)` turns a world's name into its bundled files (examples/worlds/<name>/, or $SGSIM_WORLDS/<name>/
when that variable names another folder of worlds) and registers its CLIP config and audio encoder, so every command
can load it offline (`--world NAME`; world_networks); `sgsim world build` makes those files.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sgsim.errors import SgsimError
from sgsim.settings import EditSettings, default_of

WORLDS = ("shapes",)
BUNDLE_ROOT = Path(__file__).resolve().parents[2] / "examples" / "worlds"  # in the repository beside sgsim/
ROOT_VARIABLE = "SGSIM_WORLDS"  # a folder of built worlds (<folder>/<name>/) used instead of BUNDLE_ROOT
# The network settings a world provides, with their flags: given together with --world, they are refused.
NETWORK_FLAGS = {"generator": "--generator", "encoder": "--encoder", "encoder_checkpoint": "--encoder-checkpoint",
                 "clip_weights": "--clip"}
GENERATOR_FILE = "generator.safetensors"
CLIP_FILE = "clip.safetensors"
ENCODER_FILE = "encoder.pth"
STYLE_ENCODER_FILE = "style_encoder.pt"
AUDIO_FOLDER = "audio"
DEFAULTS_FILE = "defaults.json"
ENCODER_NAME = "sgsim-resnet18-shapes"  # the SGSIM ResNet18 with a front end that sees 2.2 s (the words are short)
ENCODER_FRONT_END = {"frames": 192, "image_rows": 96}


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
    style_encoder: Path  # e4e photo encoder for the generator, in the authors' format (read_style_encoder); optional

    @property
    def audio(self) -> Path:
        """Held-out recordings shipped with the world: <word>.wav, sequence.wav and its word spans."""
        return self.root / AUDIO_FOLDER

    def defaults(self) -> dict:
        """The world's own defaults ({} when it has none): "edit" holds EditSettings fields, "video" sgsim video's
        options; scripts/bench_world.py --part curves measured what chose them."""
        import json

        path = self.root / DEFAULTS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def video_window(self) -> float:
        """The window sgsim video embeds each keyframe's target from in this world: its own, else the global default."""
        from sgsim.editing.video_settings import DEFAULT_WINDOW

        return self.defaults().get("video", {}).get("window", DEFAULT_WINDOW)


def world_files(root: str | os.PathLike, name: str = "shapes") -> WorldFiles:
    """The file layout of a world built into `root` (whether or not the files exist yet)."""
    from sgsim.worlds.clip_training import CLIP_MODEL

    root = Path(root)
    return WorldFiles(name, root, root / GENERATOR_FILE, root / CLIP_FILE, root / ENCODER_FILE, CLIP_MODEL, ENCODER_NAME,
                      root / STYLE_ENCODER_FILE)


def register_world(clip: Optional[Path] = None) -> None:
    """Make the world's CLIP config known to open_clip and its audio encoder to sgsim's registry, its CLIP weights
    `clip` (default: the bundled world's); idempotent."""
    from encoders.registry import ENCODERS, EncoderInfo
    from sgsim.worlds.clip_training import CLIP_MODEL, register_clip_config

    register_clip_config()
    if ENCODER_NAME in ENCODERS:
        if clip is not None:
            ENCODERS[ENCODER_NAME] = dataclasses.replace(ENCODERS[ENCODER_NAME], clip_weights=str(clip))
    else:
        ENCODERS[ENCODER_NAME] = EncoderInfo(
            name=ENCODER_NAME,
            description="SGSIM ResNet18 trained by `sgsim world build shapes` into the shapes world's CLIP (2.2 s window)",
            builder="encoders.sgsim_encoder:SgsimEncoder",
            kwargs={"backbone": "resnet18", "front_end": ENCODER_FRONT_END},
            weights=None,
            clip_model=CLIP_MODEL,
            clip_weights=str(clip or BUNDLE_ROOT / "shapes" / CLIP_FILE),
        )


def resolve_world(name: str, root: str | os.PathLike | None = None) -> WorldFiles:
    """A world's bundled files (`root`'s, else those in $SGSIM_WORLDS/<name>), registered for loading; one clear
    error when it is not built."""
    if name not in WORLDS:
        raise WorldError(f"unknown world {name!r}; choose one of {', '.join(WORLDS)}")
    files = world_files(root or worlds_root() / name, name)
    missing = [path.name for path in (files.generator, files.clip, files.encoder) if not path.is_file()]
    if missing:
        raise WorldError(f"the {name} world is not built in {files.root} (missing {', '.join(missing)}); "
                         f"run `sgsim world build {name} --out {files.root}`")
    register_world(files.clip)
    return files


def video_window(window: Optional[float], world: Optional[str]) -> float:
    """The window a video embeds each keyframe's target from: `window` when given, else `world`'s own
    (WorldFiles.video_window), else sgsim video's default."""
    from sgsim.editing.video_settings import DEFAULT_WINDOW

    if window is not None:
        return window
    return resolve_world(world).video_window() if world is not None else DEFAULT_WINDOW


def worlds_root() -> Path:
    """The folder of built worlds: $SGSIM_WORLDS when set, else the repository's examples/worlds."""
    return Path(os.environ[ROOT_VARIABLE]) if os.environ.get(ROOT_VARIABLE) else BUNDLE_ROOT


def world_networks(settings: EditSettings, files: Optional[WorldFiles] = None) -> EditSettings:
    """`settings` with the networks of its world (settings.world: the generator, audio encoder with its weights and
    CLIP files of resolve_world, or `files`) and the world's edit defaults where a setting is still the global default;
    unchanged without a world. A network setting given as well is one clear error."""
    if settings.world is None:
        return settings
    given = [flag for name, flag in NETWORK_FLAGS.items() if getattr(settings, name) not in (None, default_of(name))]
    if given:
        raise WorldError(f"--world {settings.world} brings its own generator, audio encoder and CLIP; leave out {', '.join(given)}")
    files = files or resolve_world(settings.world)
    own = {name: value for name, value in files.defaults().get("edit", {}).items() if getattr(settings, name) == default_of(name)}
    return settings.updated(generator=str(files.generator), encoder=files.encoder_name, encoder_checkpoint=files.encoder,
                            clip_weights=files.clip, **own)
