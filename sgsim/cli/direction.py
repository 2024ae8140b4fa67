"""`sgsim direction`: learn each sound's W+ direction once, over many images, for `sgsim apply`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import click

from sgsim.cli.options import command_line, device_option, edit_options, parse_seeds
from sgsim.settings import AUTO_STEPS, PHOTO_SETTINGS, EditSettings, settings_in, settings_record

SOUNDS_PER_RUN = 8  # sounds learned in one batched optimisation; a library folder is saved after each such group
# Edit settings a direction does not use (its run record leaves them out): it optimises no strengths, mix or video.
NOT_DIRECTION_SETTINGS = tuple(name for name in settings_in("source", "resolution", "strengths", "outputs") if name not in PHOTO_SETTINGS)


def parse_layers(text: Optional[str]) -> Optional[list[int]]:
    """'0-6' or '0,1,4-6' -> W+ row indices; None: every row. Checked against the generator once it is loaded."""
    if text is None:
        return None
    rows: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise click.BadParameter(f"{text!r}: {part!r} is not a W+ row or a range such as 0-6", param_hint="--layers")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise click.BadParameter(f"{text!r}: the range {part.strip()} runs backwards; write {high}-{low}", param_hint="--layers")
        rows.extend(range(low, min(high, 1023) + 1))
    return sorted(set(rows))


@dataclass
class DirectionPlan:
    """Everything `sgsim direction` checked before loading a network."""

    sounds: list[Path]
    sources: list = field(default_factory=list)  # seeds (int), image paths, latent arrays
    library: Optional[Path] = None  # --out as a folder: one NAME.sgdir per sound
    single: Optional[Path] = None  # --out as one NAME.sgdir holding every direction
    done: list[str] = field(default_factory=list)  # sounds of a library folder already learned (resumed)
    device: object = None
    record: Optional[Path] = None  # the run's record: run.json in a library folder, NAME.json beside a single file


def _sound_files(audio: tuple[Path, ...], audio_dir: Optional[Path]) -> list[Path]:
    from sgsim.datasets import AUDIO_SUFFIXES

    sounds = list(audio)
    if audio_dir is not None:
        if not audio_dir.is_dir():
            raise click.BadParameter(f"{audio_dir} is not a folder", param_hint="--audio-dir")
        found = sorted(path for path in audio_dir.iterdir() if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES)
        if not found:
            raise click.BadParameter(f"{audio_dir} holds no sound files ({', '.join(AUDIO_SUFFIXES)})", param_hint="--audio-dir")
        sounds += found
    return list({path.resolve(): path for path in sounds}.values())  # a sound named twice is learned once


def plan_direction(audio, audio_dir, text, seeds, latents, images, out, device, preset, generator) -> DirectionPlan:
    """Check every flag and input that can be checked without the networks, cheapest first."""
    from sgsim.editing.plan import check_sound
    from sgsim.devices import parse_device
    from sgsim.editing.directions import SUFFIX, direction_names, load_directions
    from sgsim.editing.presets import choose_preset
    from sgsim.editing.targets import Target
    from sgsim.outputs import RUN_RECORD, is_record_of

    sounds = _sound_files(audio, audio_dir)
    if not sounds and not text:
        raise click.UsageError("pass --audio FILE (repeat for several), --audio-dir FOLDER, or a --text to learn a direction toward")
    plan = DirectionPlan(sounds=sounds, device=parse_device(device))
    choose_preset(preset, generator)  # an unknown --preset fails here
    if out.suffix == SUFFIX:
        if out.is_dir():
            raise click.UsageError(f"--out {out} is a folder; name a file NAME{SUFFIX}, or a folder without that suffix")
        if out.exists():
            load_directions(out)  # a rerun may replace its own file, never a foreign one
        plan.single, plan.record = out, out.with_suffix(".json")
    else:
        if out.exists() and not out.is_dir():
            raise click.UsageError(f"--out {out} is a file; pass NAME{SUFFIX} for one file or a folder for one file per sound")
        plan.library, plan.record = out, out / RUN_RECORD
        names = direction_names([Target(audio=path, text=text) for path in sounds] or [Target(text=text)])
        for name in names:
            existing = out / f"{name}{SUFFIX}"
            if existing.exists():
                load_directions(existing)  # a damaged file is reported, not silently kept
                plan.done.append(name)
    if plan.record.exists() and not is_record_of(plan.record, "direction"):
        raise click.UsageError(f"--out {out}: {plan.record} exists and sgsim direction did not write it; pass another --out")
    for path in sounds:
        check_sound(path)
    plan.sources = list(parse_seeds(seeds)) if seeds else []
    for image in images:
        from sgsim.images import check_image

        check_image(image)
        plan.sources.append(image)
    for spec in latents:
        from sgsim.latents import read_latent_file

        plan.sources.append(read_latent_file(spec).latent)
    if not plan.sources:
        raise click.UsageError("pass the images to learn over: --seeds LIST (e.g. 0-15), --latent FILE or --image FILE")
    return plan


def _report(direction) -> str:
    """One line of held-out numbers for a learned direction."""
    held = direction.holdout
    if held is None:
        return f"{direction.name}: learned (no held-out measurement)"
    line = (f"{direction.name}: held-out seeds {','.join(map(str, held['seeds']))}: CLIP loss {held['clip_source_mean']:.4f} "
            f"-> {held['clip_direction_mean']:.4f} by the direction, {held['clip_per_image_mean']:.4f} optimised per image")
    if held["gain_fraction"] is not None:
        line += f" ({100 * held['gain_fraction']:.0f}% of the per-image gain)"
    if "id_direction_mean" in held:
        line += f"; identity distance {held['id_direction_mean']:.4f} vs {held['id_per_image_mean']:.4f}"
    return line


@click.command("direction")
@click.option("--audio", "audio", multiple=True, type=click.Path(path_type=Path), help="Sound to learn a direction for (repeat for several).")
@click.option("--audio-dir", type=click.Path(path_type=Path), default=None,
              help="A folder of sounds: learn every one (a library; with a folder --out a rerun resumes).")
@click.option("--text", default=None, help="Text mixed with every sound, or the only target when no sound is given.")
@click.option("--seeds", default=None, metavar="LIST", help="Learn over the images of these seeds, e.g. 0-15.")
@click.option("--latent", "latents", multiple=True, metavar="FILE[:KEY]", help="Learn over this W or W+ latent too (repeat).")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path), help="Learn over this photo too, inverted first (repeat).")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class of the seed images (conditional generators only).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="NAME.sgdir: one file holding every direction (its run record NAME.json beside it); a folder: one NAME.sgdir "
                   "per sound and run.json, sounds already there skipped.")
@click.option("--holdout", type=click.IntRange(0, 1000), default=3, show_default=True,
              help="Held-out seeds on which each direction is measured against per-image edits (0: skip).")
@click.option("--sources-per-step", type=click.IntRange(min=1), default=None,
              help="Images rendered per step, in turn (default: all): fewer is faster, each step sees a part of them.")
@click.option("--layers", default=None, metavar="ROWS", help="W+ rows the direction may move, e.g. 0-6 (default: all).")
@device_option
@edit_options("networks", "optimisation", names=PHOTO_SETTINGS,
              lambda_latent={"help": "Weight of the offset's size ||offset||^2 (default: the preset's)."})
def direction_command(audio, audio_dir, text, seeds, latents, images, class_index, out, holdout, sources_per_step, layers, device,
                      settings: EditSettings) -> None:
    """Learn a sound's direction once over many images, for instant edits with `sgsim apply`.

    One shared W+ offset per sound, all sounds and images in one batched optimisation (up to 8 sounds at a
    time), each measured on held-out seeds against the same sound optimised per image.
    """
    from sgsim.editing import Editor, Target
    from sgsim.editing.directions import SUFFIX, direction_names, save_directions
    from sgsim.editing.stopping import step_cap
    from sgsim.outputs import run_record, weights_record, write_json
    from sgsim.progress import edit_bar

    layer_rows = parse_layers(layers)
    plan = plan_direction(audio, audio_dir, text, seeds, latents, images, out, device, settings.preset, settings.generator)
    targets = [Target(audio=path, text=text) for path in plan.sounds] or [Target(text=text)]
    names = direction_names(targets)
    todo = [(name, target) for name, target in zip(names, targets) if name not in plan.done]
    if plan.done:
        click.echo(f"{len(plan.done)} of {len(names)} directions already in {out}; learning the other {len(todo)}")
    if not todo:
        return
    editor = Editor.from_pretrained(settings.generator, settings.encoder, encoder_checkpoint=settings.encoder_checkpoint,
                                    clip=settings.clip_weights, device=plan.device, preset=settings.preset)
    click.echo(f"preset {editor.preset_name} ({editor.preset_reason})")
    click.echo("loaded " + ", ".join(f"{name} {path}" for name, path in editor.weight_files.items()))
    groups = [todo] if plan.single else [todo[i:i + SOUNDS_PER_RUN] for i in range(0, len(todo), SOUNDS_PER_RUN)]
    learned = []
    for group in groups:
        with edit_bar(step_cap(settings.steps), f"{len(group)} direction(s)") as on_step:
            directions = editor.learn_directions(
                [target for _, target in group], plan.sources, settings, layers=layer_rows, holdout=holdout,
                sources_per_step=sources_per_step, names=[name for name, _ in group], callback=on_step, class_index=class_index,
            )
        if settings.steps == AUTO_STEPS:
            click.echo(f"steps auto: {directions[0].settings['steps_reason']}")
        for direction in directions:
            direction.settings["command_line"] = command_line()
            click.echo(_report(direction))
            if plan.library is not None:
                save_directions(plan.library / f"{direction.name}{SUFFIX}", [direction])
        learned += directions
    if plan.single is not None:
        save_directions(plan.single, learned)
    files = [plan.single.name] if plan.single is not None else [f"{direction.name}{SUFFIX}" for direction in learned]
    write_json(plan.record, run_record(
        "direction", command_line(), settings=settings_record(settings, leave_out=NOT_DIRECTION_SETTINGS),
        layers=layer_rows, holdout=holdout, sources_per_step=sources_per_step, class_index=class_index,
        directions={direction.name: {"sound": direction.sound, "text": direction.text, "holdout": direction.holdout}
                    for direction in learned},
        inversions=editor.inversions, weights=weights_record(editor.weight_files), outputs=[*files, plan.record.name],
    ))
    click.echo(f"wrote {len(learned)} direction(s) to {plan.single or plan.library} and {plan.record.name}")
