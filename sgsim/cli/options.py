"""Options and argument parsers the commands share: output folder, device, seeds, strengths, inversion of a photo,
names of files."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Optional

import click

from sgsim.outputs import safe_stem, unique  # noqa: F401  (the commands import them from here too)

SEED_MAX = 2**32 - 1  # numpy RandomState seeds, as NVIDIA's generate.py draws z
MAX_SEEDS = 10_000  # one generate run; a typo such as 0-4000000000 fails at once
MAX_STEPS = 100_000  # optimisation and inversion steps: far above any useful run, small enough to allocate the loss history
OUT_ROOT = Path("out")  # where default output folders go
REFINE_STEPS = 300  # W+ refinement steps after an inversion's W fit (sgsim.inversion.invert refine_steps)


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
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers such as 0.5,1,1.5") from None
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r}: strengths must be finite numbers")
    return values


def file_stems(paths: list[Path]) -> list[str]:
    """A file-name-safe, unique stem per sound (a repeated stem gets -2, -3, ...)."""
    return unique(safe_stem(path.stem, "sound") for path in paths)


def fresh_folder(name: str, root: Path = OUT_ROOT) -> Path:
    """root/name, or root/name-2, -3, ... : the first that does not exist yet, so runs never overwrite each other."""
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


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
                             "FFHQ-aligned generators (ffhq, metfaces, stylegan2-ffhq-config-f, stylegan3-*-ffhq/metfaces-1024x1024, by "
                             "name or cached file), "
                             "off otherwise.")(function)


def _numbers(count: int, example: str) -> Callable:
    """A click callback reading `count` comma-separated finite numbers ('0.1,-0.2'), or None when not given."""
    def parse(ctx: click.Context, param: click.Parameter, text: Optional[str]) -> Optional[tuple[float, ...]]:
        if text is None:
            return None
        try:
            values = tuple(float(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or not all(math.isfinite(value) and abs(value) <= 1e4 for value in values):
            raise click.BadParameter(f"{text!r} is not {count} comma-separated numbers such as {example}")
        return values
    return parse


def transform_options(function: Callable) -> Callable:
    """--translate X,Y and --rotate DEG: a StyleGAN3 generator's input transform (sgsim.camera.Camera)."""
    function = click.option("--rotate", type=click.FloatRange(-3600, 3600), default=0.0, show_default=True, metavar="DEG",
                            help="Rotate the picture by DEG degrees (StyleGAN3 generators).")(function)
    return click.option("--translate", callback=_numbers(2, "0.1,-0.05"), default=None, metavar="X,Y",
                        help="Move the picture by X,Y image widths (StyleGAN3 generators).")(function)


def camera_option(function: Callable) -> Callable:
    """--camera PAN_X,PAN_Y,SPIN: a StyleGAN3 generator's input moving while the sound plays."""
    return click.option("--camera", callback=_numbers(3, "0.02,0,3"), default=None, metavar="PAN_X,PAN_Y,SPIN",
                        help="Move the camera while the sound plays: image widths per second along x and y, and "
                             "degrees per second (StyleGAN3 generators).")(function)
