"""Options and argument parsers the commands share: output folder, device, seeds, and the options of every edit
setting, built from sgsim.settings.EditSettings so that each is declared once."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

import click

from sgsim.errors import SgsimError
from sgsim.outputs import fresh_folder, safe_stem, unique  # noqa: F401  (the commands import them from here too)
from sgsim.settings import (AUTO_STEPS, MAX_ROTATE, MAX_SEEDS, ROTATE_HELP, SEED_MAX, SETTINGS, TRANSLATE_HELP, EditSettings,
                            check_steps, check_work_resolution, default_of, settings_in)


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


def _strength_option(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    return parse_strengths(value)


def _work_resolution_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_work_resolution(value)
    except SgsimError as exc:
        raise click.BadParameter(str(exc)) from None


def _steps_option(low: int, high: int) -> Callable:
    """A click callback reading --steps: a whole number from `low` to `high`, or auto."""
    def parse(ctx: click.Context, param: click.Parameter, value: str):
        try:
            steps = check_steps(value)
        except SgsimError:
            steps = None
        if steps is None or (steps != AUTO_STEPS and not low <= steps <= high):
            raise click.BadParameter(f"{value!r} is not a whole number from {low} to {high}, nor auto")
        return steps
    return parse


# What the command line adds to an edit setting's declaration (sgsim.settings.EditSettings): how a flag's text is parsed.
_PARSERS = {
    "encoder_checkpoint": {"type": click.Path(path_type=Path)},
    "photo_encoder": {"metavar": "FILE|NAME"},
    "strengths": {"callback": _strength_option},
    "loss_weights": {"multiple": True, "callback": parse_weights, "metavar": "NAME=VALUE"},
    "save_video": {"is_flag": False, "flag_value": "mp4"},
    "work_resolution": {"callback": _work_resolution_option, "metavar": "auto|full|N"},
    "steps": {"metavar": "N|auto"},
}


def setting_option(name: str, **overrides) -> Callable:
    """The option of the edit setting `name`, declared once from EditSettings' field (flag, default, bounds,
    choices, help); `overrides` (default, low, high, help, metavar) adapt it where a command differs on purpose."""
    meta = {**SETTINGS[name].metadata, **{key: value for key, value in overrides.items() if key in ("low", "high", "help")}}
    default = overrides.get("default", default_of(name))
    extra = dict(_PARSERS.get(name, {}), **{key: value for key, value in overrides.items() if key == "metavar"})
    if meta["choices"] is not None:
        extra["type"] = click.Choice(meta["choices"])
    elif name == "steps":  # a number or auto: read as text, checked by its callback
        extra.update(type=click.STRING, callback=_steps_option(meta["low"], meta["high"]))
    elif isinstance(default, bool) and "/" not in (meta["flag"] or ""):
        extra["is_flag"] = True
    elif meta["low"] is not None or meta["high"] is not None:
        kind = click.IntRange if isinstance(default, int) else click.FloatRange
        bounds = {"min_open": True} if meta["low_open"] else {}
        extra["type"] = kind(meta["low"], meta["high"], **bounds)
    if name == "strengths":
        default = ",".join(f"{value:g}" for value in default)
    elif name == "loss_weights":
        default = ()
    shown = default is not None and default != () and not isinstance(default, bool)
    flag = meta["flag"] or "--" + name.replace("_", "-")
    return click.option(flag, name, default=default, show_default=shown, help=meta["help"], **extra)


def edit_options(*groups: str, names: Sequence[str] = (), leave_out: Sequence[str] = (), **overrides: dict) -> Callable:
    """The options of every edit setting in `groups` (networks, source, optimisation, strengths, outputs) and
    `names`, but those in `leave_out`, gathered into one `settings` argument (an EditSettings; settings a command
    lacks keep their defaults). `overrides`: setting name -> setting_option overrides."""
    chosen = [name for name in SETTINGS if (name in settings_in(*groups) or name in names) and name not in leave_out]

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def gathered(**kwargs):
            from sgsim.worlds import world_networks

            values = {name: kwargs.pop(name) for name in chosen}
            return function(settings=world_networks(EditSettings(**values)), **kwargs)

        for name in reversed(chosen):
            gathered = setting_option(name, **overrides.get(name, {}))(gathered)
        return gathered
    return decorate


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
    function = click.option("--rotate", type=click.FloatRange(-MAX_ROTATE, MAX_ROTATE), default=0.0, show_default=True,
                            metavar="DEG", help=ROTATE_HELP)(function)
    return click.option("--translate", callback=_numbers(2, "0.1,-0.05"), default=None, metavar="X,Y",
                        help=TRANSLATE_HELP)(function)


def camera_option(function: Callable) -> Callable:
    """--camera PAN_X,PAN_Y,SPIN: a StyleGAN3 generator's input moving while the sound plays."""
    return click.option("--camera", callback=_numbers(3, "0.02,0,3"), default=None, metavar="PAN_X,PAN_Y,SPIN",
                        help="Move the camera while the sound plays: image widths per second along x and y, and "
                             "degrees per second (StyleGAN3 generators).")(function)


def world_option(function: Callable) -> Callable:
    """--world NAME for a command that takes some network settings one by one (generator, encoder, encoder_checkpoint,
    clip_weights): given, they become the world's files (sgsim.worlds.world_networks); the command also gets `world`."""
    @functools.wraps(function)
    def resolved(**kwargs):
        if kwargs.get("world") is not None:
            from sgsim.worlds import NETWORK_FLAGS, world_networks

            names = [name for name in NETWORK_FLAGS if name in kwargs]
            settings = world_networks(EditSettings(world=kwargs["world"], **{name: kwargs[name] for name in names if kwargs[name] is not None}))
            kwargs.update({name: getattr(settings, name) for name in names})
        return function(**kwargs)
    return setting_option("world")(resolved)
