"""Options and argument parsers the commands share: output folder, device, seeds, strengths, inversion of a photo,
names of files."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Optional

import click

from sgsim.errors import SgsimError
from sgsim.outputs import VIDEO_FORMATS, file_stems, fresh_folder, safe_stem, unique  # noqa: F401  (the commands import them from here too)
from sgsim.settings import MAX_SEEDS, MAX_STEPS, REFINE_STEPS, SEED_MAX  # noqa: F401  (as above)


def parse_seeds(text: str) -> list[int]:
    """'0-3,42' -> [0, 1, 2, 3, 42], as NVIDIA's gen_images.py --seeds; each in 0..SEED_MAX, at most MAX_SEEDS."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise click.BadParameter(f"{text!r}: {part!r} is not a seed or a range such as 0-3")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise click.BadParameter(f"{text!r}: the range {part.strip()} runs backwards; write {high}-{low}")
        if high > SEED_MAX:
            raise click.BadParameter(f"{text!r}: seeds run from 0 to {SEED_MAX}")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise click.BadParameter(f"{text!r} asks for more than {MAX_SEEDS} seeds in one run")
        seeds.extend(range(low, high + 1))
    return seeds


def parse_strengths(text: str) -> list[float]:
    """'0.5,1,1.5' -> [0.5, 1.0, 1.5]; anything else is a usage error naming the bad part."""
    from sgsim.settings import parse_strengths as parse

    try:
        return parse(text)
    except SgsimError as error:
        raise click.BadParameter(str(error)) from None


def command_line() -> list[str]:
    """The command line of this run as typed (the group stores it when it starts)."""
    context = click.get_current_context(silent=True)
    argv = context.find_root().meta.get("sgsim.argv") if context is not None else None
    return list(argv) if argv is not None else []


def out_option(required: bool, default_help: str = "") -> Callable:
    """--out FOLDER and --overwrite, shared by every command that writes a run folder."""
    def decorate(function: Callable) -> Callable:
        function = click.option("--overwrite", is_flag=True,
                                help="Replace --out even if it holds files sgsim did not write (the whole folder is replaced).")(function)
        return click.option("--out", type=click.Path(path_type=Path), required=required, default=None,
                            help=f"Output folder{default_help}. A rerun replaces it whole; a folder of other files is refused.")(function)
    return decorate


def device_option(function: Callable) -> Callable:
    return click.option("--device", default=None, help="torch device: cpu, cuda, cuda:N (default: cuda if available, else cpu).")(function)


def steps_option(default: int, help: Optional[str] = None) -> Callable:
    return click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=default, show_default=True, help=help)


def parse_weights(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    """('latent=0.01', 'perceptual=0.1') -> {'latent': 0.01, 'perceptual': 0.1}, each name one of the registered loss
    terms (sgsim.losses.TERMS, imported only when the flag is given, so --help stays light)."""
    weights: dict[str, float] = {}
    if values:
        from sgsim.losses import TERMS
    else:
        TERMS = {}
    for text in values:
        name, equals, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not equals or not name.strip() or not (math.isfinite(number) and number >= 0):
            raise click.BadParameter(f"{text!r} is not NAME=WEIGHT with a finite weight >= 0, such as latent=0.01")
        if name.strip() not in TERMS:
            raise click.BadParameter(f"{text!r}: unknown loss term {name.strip()!r}; the terms are {', '.join(TERMS)}")
        weights[name.strip()] = number
    return weights


def weight_option(function: Callable) -> Callable:
    """--weight NAME=VALUE (repeatable): the weight of any loss term by name, over the preset's."""
    return click.option("--weight", "loss_weights", multiple=True, callback=parse_weights, metavar="NAME=VALUE",
                        help="Weight of a loss term by name (clip, latent, id, perceptual, smoothness, ...), over the "
                             "preset's; repeat for several. 0 turns a term off.")(function)


def refine_steps_option(function: Callable) -> Callable:
    """--refine-steps of an inversion, shared by `invert` and `edit --image`."""
    return click.option("--refine-steps", type=click.IntRange(0, MAX_STEPS), default=REFINE_STEPS, show_default=True,
                        help="Steps of the W+ refinement after the W fit (every layer free); 0: keep the W fit.")(function)


def align_option(function: Callable) -> Callable:
    """--align/--no-align of a photo, shared by `invert` and `edit --image`; None (not given) lets
    sgsim.alignment.should_align decide from the generator."""
    return click.option("--align/--no-align", default=None,
                        help="FFHQ face alignment of the photo (needs sgsim[faces]); --no-align: centre crop. Default: on for "
                             "FFHQ-aligned generators (ffhq, metfaces, stylegan2-ffhq-config-f, by name or cached file), "
                             "off otherwise.")(function)


def _strength_option(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    return parse_strengths(value)


def edit_settings(function: Callable) -> Callable:
    """The flags of an edit's networks, inversion and optimisation, shared by `sgsim edit` and `sgsim batch` (every job's)."""
    options = [
        click.option("--invert-steps", type=click.IntRange(1, MAX_STEPS), default=1000, show_default=True, help="Steps of the W fit of an image."),
        refine_steps_option,
        align_option,
        click.option("--generator", default="ffhq", show_default=True, help="Generator: manifest name or checkpoint path."),
        click.option("--encoder", default="sgsim-resnet18", show_default=True, help="Audio encoder name."),
        click.option("--encoder-checkpoint", type=click.Path(path_type=Path), default=None,
                     help="Audio encoder weights (default: the encoder's released weights)."),
        click.option("--clip", "clip_weights", default=None, help="CLIP weights path (default: the model the encoder's space belongs to)."),
        click.option("--preset", default=None, help="Loss weights: ffhq (faces, identity kept), landscape or wikiart (default: the generator's)."),
        steps_option(300),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True),
        click.option("--lambda-latent", type=click.FloatRange(min=0), default=None, help="Latent distance weight (default: the generator's preset)."),
        click.option("--lambda-id", type=click.FloatRange(min=0), default=None, help="Identity loss weight (default: the generator's preset)."),
        weight_option,
        click.option("--strength", "strengths", default="1", callback=_strength_option, show_default=True,
                     help="Comma-separated edit strengths, e.g. 0.5,1,1.5."),
        click.option("--mix", type=click.Choice(["weighted", "layers"]), default="weighted", show_default=True, help="How a sound and a text combine."),
        click.option("--loudness-strength", is_flag=True, help="Scale each strength by the sound's loudness (-20 dBFS = 1)."),
        device_option,
        click.option("--save-video", type=click.Choice(VIDEO_FORMATS), is_flag=False, flag_value="mp4", default=None,
                     help="Also write the optimisation as a video with the source, a label per target and the step: "
                          "optimisation.mp4 (H.264), or optimisation.gif with --save-video gif."),
        click.option("--precision", type=click.Choice(["fp32", "mixed", "bf16"]), default=None,
                     help="Of the optimisation. mixed: fp16 generator blocks and CLIP autocast (CUDA only); bf16: the generator in bfloat16 "
                          "(its blocks in bf16 on a CPU), CLIP and the identity network under bfloat16 autocast. Default: mixed on CUDA; bf16 on a CPU with AVX512-BF16 or AMX, fp32 on one without."),
    ]
    for option in reversed(options):
        function = option(function)
    return function
