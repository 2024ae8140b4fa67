"""Settings every entry point shares (command line, demo, batch jobs, Python API), without torch: bounds and defaults,
and EditSettings, the one type holding every setting of an edit with its default, its bounds and its help line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from sgsim.errors import SgsimError

SEED_TRUNCATION = 0.7  # a seed's w is pulled this far toward w_avg (SGSIM / StyleCLIP start their edits there)
TRUNCATION_BOUND = 10.0  # |psi| of a seed's truncation, as NVIDIA's generate.py accepts it; beyond, the image is noise
SEED_MAX = 2**32 - 1  # numpy RandomState seeds, as NVIDIA's generate.py draws z
MAX_SEEDS = 10_000  # one generate run; a typo such as 0-4000000000 fails at once
AUTO_STEPS = "auto"  # steps setting: run until the loss has flattened (sgsim.editing.stopping.AUTO_RULE), at most its cap
MAX_STEPS = 100_000  # optimisation and inversion steps: far above any useful run, small enough to allocate the loss history
INVERT_STEPS = 1000  # steps of an inversion's W fit (sgsim.inversion.invert steps)
REFINE_STEPS = 300  # W+ refinement steps after an inversion's W fit (sgsim.inversion.invert refine_steps)
INVERSION_SEED = 0  # seeds the inversion of a photo (initial noise, w exploration noise)
VIDEO_FRAMES = 50  # about this many optimisation snapshots go into an edit's optimisation video
MAX_STRENGTH = 100.0  # |strength| bound: 1 is the edit, the demo's slider stops at 2; 1e300 was inf in float32
MAX_STRENGTHS = 256  # strengths of one run: each is a generator pass and an image written
MIX_MODES = ("weighted", "layers")  # how a sound and a text combine (sgsim.editing.Editor.edit mix)
PRECISIONS = ("fp32", "mixed", "bf16")  # of an optimisation (sgsim.devices.choose_precision)
INVERSION_METHODS = ("e4e", "optimise", "e4e+optimise")  # how a photo becomes a latent (sgsim.photo_inversion)
VIDEO_FORMATS = ("mp4", "gif")  # of an edit's optimisation video (sgsim.editing.folder)
GROUPS = ("networks", "source", "optimisation", "resolution", "strengths", "outputs")  # EditSettings' fields by what they set
WORK_RESOLUTIONS = ("auto", "full")  # or a block resolution in pixels (sgsim.editing.optimise.choose_work_resolution)
MAX_ROTATE = 3600.0  # |degrees| of a StyleGAN3 generator's fixed rotation (sgsim.camera): ten turns, beyond any use
# The input transform of a StyleGAN3 generator (sgsim.camera.Camera), as `sgsim generate` and the demo offer it.
TRANSLATE_HELP = "Move the picture by X,Y image widths (StyleGAN3 generators)."
ROTATE_HELP = "Rotate the picture by DEG degrees (StyleGAN3 generators)."


def parse_strengths(text: str) -> list[float]:
    """'0.5,1,1.5' -> [0.5, 1.0, 1.5] (the command line's --strength, a jobs CSV's strength cell); anything else is an
    SgsimError naming the text."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SgsimError(f"{text!r} is not a comma-separated list of numbers such as 0.5,1,1.5") from None
    if not all(math.isfinite(v) for v in values):
        raise SgsimError(f"{text!r}: strengths must be finite numbers")
    return values


def check_steps(value: Union[int, str]) -> Union[int, str]:
    """A steps setting as EditSettings keeps it: "auto" or a whole number (its bounds are checked where it runs); a
    number given as text (a jobs CSV cell) becomes an int."""
    text = str(value).strip().lower()
    if text == AUTO_STEPS:
        return AUTO_STEPS
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not (isinstance(value, int) or text.lstrip("-").isdigit()):
        raise SgsimError(f"steps {value!r} is neither a whole number such as 300 nor auto")
    return int(text)


def check_settings(steps: Union[int, str], lr: float, mix: str, strengths: Sequence[float]) -> list[float]:
    """The optimisation's settings checked (the strengths returned as floats), each problem as one SgsimError line."""
    if mix not in MIX_MODES:
        raise SgsimError(f"unknown mix {mix!r}; choose one of {', '.join(MIX_MODES)}")
    if steps != AUTO_STEPS and (int(steps) != steps or steps < 1):
        raise SgsimError(f"steps must be a whole number >= 1 or auto, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise SgsimError(f"lr must be a finite number > 0, got {lr}")
    return check_strengths(strengths)


def check_strengths(strengths: Sequence[float]) -> list[float]:
    """Strengths as floats; one to MAX_STRENGTHS of them, all finite and within +-MAX_STRENGTH."""
    try:
        strengths = [float(s) for s in strengths]
    except (TypeError, ValueError):
        raise SgsimError(f"strengths must be numbers, got {list(strengths)!r:.200}") from None
    if len(strengths) > MAX_STRENGTHS:
        raise SgsimError(f"{len(strengths)} strengths, more than the {MAX_STRENGTHS} one run renders; split them over several runs")
    if not strengths or not all(math.isfinite(s) and abs(s) <= MAX_STRENGTH for s in strengths):
        raise SgsimError(f"strengths must be one or more numbers from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}, got {strengths}")
    return strengths


def check_work_resolution(value: Union[str, int]) -> str:
    """A work resolution as EditSettings keeps it: "auto", "full" or a whole number of pixels (>= 4) as text; whether
    the generator has that block is checked once it is loaded."""
    text = str(value).strip().lower()
    if text in WORK_RESOLUTIONS or (text.isdigit() and int(text) >= 4):
        return text
    raise SgsimError(f"work resolution {value!r} is not auto, full or a number of pixels such as 256")


def setting(default: Any, group: str, help: str, flag: Optional[str] = None, low: Optional[float] = None,
            high: Optional[float] = None, low_open: bool = False, choices: Optional[Sequence[str]] = None):
    """A field of EditSettings: its default, the group it belongs to, its help line, the command-line flag (default:
    --field-name) and its bounds or choices. The command line's options are built from these (sgsim.cli.options)."""
    metadata = {"group": group, "help": help, "flag": flag, "low": low, "high": high, "low_open": low_open, "choices": choices}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class EditSettings:
    """Every setting of an edit, with its default: what `sgsim edit`, a row of `sgsim batch`, the demo and
    Editor.edit read, and what run.json records (settings_record). Which images and sounds to edit are not settings."""

    generator: str = setting("ffhq", "networks", "Generator: manifest name or checkpoint path.")
    encoder: str = setting("sgsim-resnet18", "networks", "Audio encoder name.")
    encoder_checkpoint: Optional[Union[str, Path]] = setting(
        None, "networks", "Audio encoder weights (default: the encoder's released weights).")
    clip_weights: Optional[Union[str, Path]] = setting(
        None, "networks", "CLIP weights path (default: the model the encoder's space belongs to).", flag="--clip")
    preset: Optional[str] = setting(
        None, "networks", "Loss weights: ffhq (faces, identity kept), landscape or wikiart (default: the generator's).")
    world: Optional[str] = setting(
        None, "networks", "A miniature world built by `sgsim world build` (shapes): its generator, audio encoder and "
        "CLIP, instead of --generator, --encoder-checkpoint and --clip.")
    free: bool = setting(False, "source", "Free generation: start from the generator's mean latent (w_avg on every W+ "
                         "row) instead of --seed, --image or --latent, and minimise the CLIP term alone.")
    truncation: float = setting(SEED_TRUNCATION, "source", "Truncation psi of a --seed's latent: w_avg + psi (w - w_avg).",
                                low=-TRUNCATION_BOUND, high=TRUNCATION_BOUND)
    invert_steps: int = setting(INVERT_STEPS, "source", "Steps of the W fit of a photo (its inversion).", low=1, high=MAX_STEPS)
    refine_steps: int = setting(REFINE_STEPS, "source", "Steps of the W+ refinement after the W fit (every layer free); "
                                "0: keep the W fit.", low=0, high=MAX_STEPS)
    align: Optional[bool] = setting(
        None, "source", "FFHQ face alignment of the photo (needs sgsim[faces]); --no-align: centre crop. Default: on for "
        "face generators (a manifest generator whose domain is faces, by name or cached file, or a file trained on FFHQ, "
        "MetFaces or CelebA-HQ), off otherwise.",
        flag="--align/--no-align")
    inversion_method: Optional[str] = setting(
        None, "source", "How a photo becomes a latent. e4e: a trained encoder, seconds; optimise: ADA projector + W+ "
        "refinement, minutes to hours; e4e+optimise: the refinement started from the encoder's code. Default: e4e when "
        "an encoder for the generator is at hand (--photo-encoder, or the published one in the cache), else optimise.",
        flag="--method", choices=INVERSION_METHODS)
    photo_encoder: Optional[Union[str, Path]] = setting(
        None, "source", "e4e / pSp photo encoder (path or manifest name) for --method e4e; default: the published one "
        "for the generator (e4e-ffhq for ffhq).")
    steps: Union[int, str] = setting(
        300, "optimisation", "Optimisation steps, or auto: once the loss has flattened, cool the learning rate over 50 steps "
        "and stop, at most 300 (run.json says how many ran and why).", low=1, high=MAX_STEPS)
    lr: float = setting(0.1, "optimisation", "Learning rate of the optimisation.", low=0, low_open=True)
    lambda_latent: Optional[float] = setting(None, "optimisation", "Latent distance weight (default: the generator's preset).", low=0)
    lambda_id: Optional[float] = setting(None, "optimisation", "Identity loss weight (default: the generator's preset).", low=0)
    loss_weights: dict = setting({}, "optimisation", "Weight of a loss term by name (clip, latent, id, perceptual, "
                                 "smoothness, ...), over the preset's; repeat for several. 0 turns a term off.", flag="--weight")
    adaptive_layer_masking: bool = setting(
        False, "optimisation", "The official script's adaptive layer masking: the latent term's weight goes to the "
        "adaptive_latent term, whose per-row weights fall as rows must move (latent weight 0).")
    precision: Optional[str] = setting(
        None, "optimisation", "Of the optimisation. mixed: fp16 generator blocks and CLIP autocast (CUDA only); bf16: the "
        "generator in bfloat16 (its blocks in bf16 on a CPU), CLIP and the identity network under bfloat16 autocast. "
        "Default: mixed on CUDA; bf16 on a CPU with AVX512-BF16 or AMX, fp32 on one without.", choices=PRECISIONS)
    work_resolution: str = setting(
        "auto", "resolution", "Optimise at the generator's image of this block (StyleGAN2 skip generators), then render "
        "full size: auto, full or pixels such as 256. auto: full size until the 256 px working resolution is measured "
        "to keep quality; run.json says which and why.")
    strengths: tuple = setting((1.0,), "strengths", "Comma-separated edit strengths, e.g. 0.5,1,1.5.", flag="--strength")
    mix: str = setting("weighted", "strengths", "How a sound and a text combine.", choices=MIX_MODES)
    loudness_strength: bool = setting(False, "strengths", "Scale each strength by the sound's loudness (-20 dBFS = 1).")
    save_video: Optional[str] = setting(
        None, "outputs", "Also write the optimisation as a video with the source, a label per target and the step: "
        "optimisation.mp4 (H.264), or optimisation.gif with --save-video gif.", choices=VIDEO_FORMATS)

    def __post_init__(self):
        object.__setattr__(self, "strengths", tuple(check_strengths(self.strengths)))
        object.__setattr__(self, "loss_weights", dict(self.loss_weights or {}))
        object.__setattr__(self, "work_resolution", check_work_resolution(self.work_resolution))
        object.__setattr__(self, "steps", check_steps(self.steps))

    def updated(self, **changes) -> "EditSettings":
        """A copy with `changes` (field names; `weights` is loss_weights, as Editor.edit calls it); an unknown name is
        a TypeError, as for a function's keyword."""
        if "weights" in changes:
            changes["loss_weights"] = changes.pop("weights")
        unknown = sorted(set(changes) - set(SETTINGS))
        if unknown:
            raise TypeError(f"unknown edit setting {unknown[0]!r}; the settings are {', '.join(SETTINGS)}")
        return dataclasses.replace(self, **{name: value for name, value in changes.items()})


SETTINGS: dict[str, dataclasses.Field] = {item.name: item for item in dataclasses.fields(EditSettings)}
# How a photo source is inverted, taken by every command that inverts photos through the Editor (its W fit alone).
PHOTO_SETTINGS = ("invert_steps", "align", "inversion_method", "photo_encoder")


def default_of(name: str) -> Any:
    """The default of the edit setting `name` (the demo and the command line read it from here)."""
    return getattr(EditSettings(), name)


def bounds_of(name: str) -> tuple[Optional[float], Optional[float]]:
    """The (low, high) bounds of the numeric edit setting `name`; None where it is open."""
    return SETTINGS[name].metadata["low"], SETTINGS[name].metadata["high"]


def settings_in(*groups: str) -> list[str]:
    """The names of the edit settings in `groups` (GROUPS), in declaration order."""
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        raise ValueError(f"unknown settings group {unknown[0]!r}; the groups are {', '.join(GROUPS)}")
    return [name for name, item in SETTINGS.items() if item.metadata["group"] in groups]


def settings_record(settings: EditSettings, leave_out: Sequence[str] = ()) -> dict:
    """An EditSettings as run.json records it (JSON types: paths as strings, strengths as a list): the one place
    every record of an edit's settings is made (edit, batch, video, direction, the demo)."""
    record = {}
    for name in SETTINGS:
        if name in leave_out:
            continue
        value = getattr(settings, name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        record[name] = value
    return record
