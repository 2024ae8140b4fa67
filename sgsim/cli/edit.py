"""`sgsim edit`: sound-guided (and text-guided) edits of a seed image, a latent or a photo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import click

from sgsim.cli.options import SEED_MAX, command_line, device_option, edit_options, out_option
from sgsim.settings import AUTO_STEPS, GROUPS, VIDEO_FRAMES, EditSettings


def _check_weights(generator: str, encoder: str, encoder_checkpoint: Optional[Path], clip_weights: Optional[str]) -> None:
    """Every weights file the edit needs that is missing, named at once (with URLs), rather than one per attempt."""
    from checkpoints import resolve_all
    from encoders import available

    info = {item.name: item for item in available()}.get(encoder)
    needed = [generator]
    if info is not None:
        needed += [encoder_checkpoint or info.weights, clip_weights or info.clip_weights]
    resolve_all([name for name in dict.fromkeys(needed) if name is not None])


# Seconds per fp32 optimisation step of a 1024 px edit (FFHQ config-f widths, with the identity term) on a 2-core
# CPU, on the slow side of the measured 6.7 s (README, Performance: bench_edit.py --vs-full --resolution 1024); the
# blocks above 1024 px would add about their pixel count, which is what the note below scales by.
CPU_SECONDS_PER_STEP_1024 = 7.5
SLOW_CPU_RESOLUTION = 1024


def warn_slow_cpu_edit(resolution: int, device, steps: int) -> None:
    """Say before it starts that an edit optimised at `resolution` px on a CPU takes the better part of an hour, and
    what to do instead."""
    if str(device).startswith("cpu") and resolution >= SLOW_CPU_RESOLUTION:
        minutes = CPU_SECONDS_PER_STEP_1024 * (resolution / SLOW_CPU_RESOLUTION) ** 2 * steps / 60
        click.echo(f"note: a {resolution} px edit on the CPU takes roughly {minutes:.0f} min for {steps} steps on 2 cores "
                   f"(from the measured 1024 px rate); a GPU takes a minute or two, and fewer --steps or --steps auto help",
                   err=True)


def run_editor(plan, audio: Sequence[Path], text: Optional[str], settings: EditSettings, class_index: Optional[int]):
    """Load the networks, invert an --image (under its own progress bar) and edit: the one place this command calls
    the Editor. Returns (result, weights files, timings, the inverted photo [1, 3, R, R] and its inversion's record,
    both None for other sources)."""
    from sgsim.editing import Editor, Target
    from sgsim.editing.optimise import choose_work_resolution
    from sgsim.editing.plan import inverted_source
    from sgsim.editing.sources import SeedSource, class_label
    from sgsim.editing.stopping import step_cap
    from sgsim.photo_inversion import describe_distances
    from sgsim.progress import edit_bar

    started = time.perf_counter()
    _check_weights(settings.generator, settings.encoder, settings.encoder_checkpoint, settings.clip_weights)
    editor = Editor.from_pretrained(settings.generator, settings.encoder, encoder_checkpoint=settings.encoder_checkpoint,
                                    clip=settings.clip_weights, device=plan.device, preset=settings.preset,
                                    check_generator=lambda G: class_label(G, class_index) if isinstance(plan.source, SeedSource) else None)
    click.echo(f"preset {editor.preset_name} ({editor.preset_reason})")
    click.echo("loaded " + ", ".join(f"{name} {path}" for name, path in editor.weight_files.items()))
    working = choose_work_resolution(settings.work_resolution, editor.generator, editor.device)
    click.echo(f"work resolution {working.used or 'full'} ({working.reason})")
    steps = step_cap(settings.steps)
    warn_slow_cpu_edit(working.used or editor.generator.img_resolution, editor.device, steps)
    loaded = time.perf_counter()
    timings = {"load": loaded - started}
    source, photo, inversion = inverted_source(editor, plan, settings)  # here rather than inside editor.edit, to time it
    if photo is not None:
        timings["invert"] = time.perf_counter() - loaded
    inverted = time.perf_counter()
    targets = [Target(audio=path, text=text) for path in audio] if audio else [Target(text=text)]
    with edit_bar(steps) as on_step:
        result = editor.edit(
            source, targets, settings, callback=on_step,
            record_every=max(1, steps // VIDEO_FRAMES) if settings.save_video else 0,
            class_index=class_index,  # as an argument, not in SeedSource: the Editor records the argument in settings
        )
    timings["edit"] = time.perf_counter() - inverted
    if settings.steps == AUTO_STEPS:
        click.echo(f"steps auto: {result.settings['steps_reason']}")
    if inversion is not None:
        click.echo(f"reconstruction distance to the photo: {describe_distances(inversion['reconstruction'])}")
    return result, dict(editor.weight_files), timings, photo, inversion


@click.command("edit")
@click.option("--audio", "audio", multiple=True, type=click.Path(path_type=Path), help="Sound to edit toward (repeat for several).")
@click.option("--text", default=None, help="Text mixed with every sound (see --mix), or the only target when no --audio is given.")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="Source image to invert and edit.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help="Source: the generator's image of this seed (see --truncation).")
@click.option("--latent", default=None, metavar="FILE[:KEY]",
              help="Source: a W or W+ latent in a .npz (sgsim generate/invert 'w', the ADA projector's projected_w.npz). "
                   "An edit's latents.npz continues from its first edited latent; FILE:edited[N] picks another, FILE:source its start.")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class of the --seed image (conditional generators only).")
@out_option(required=False, default_help=" (default: a new folder out/<sound or text>-<source>, -2, -3... if taken)")
@device_option
@edit_options(*GROUPS)
def edit_command(audio, text, image, seed, latent, class_index, out, overwrite, device, settings: EditSettings) -> None:
    """Edit an image so that it shows a sound, a text or both.

    Writes source.png (for --image: input.png, the photo as inverted, and source.png, its reconstruction), one PNG per
    target and strength, comparison.png, latents.npz ('source', 'edited', 'swept', 'strengths', the source's 'noise.*'),
    run.json and with --save-video optimisation.mp4 (or .gif).
    """
    from sgsim.atomic import staged_output_dir
    from sgsim.editing.folder import write_edit_folder
    from sgsim.editing.plan import plan_edit, source_record
    from sgsim.outputs import edit_run_record, is_run_folder, weights_record

    plan = plan_edit(audio, text, image, seed, latent, class_index, settings, device, out)
    with staged_output_dir(plan.out, overwrite, is_run_folder) as staging:  # an unusable --out fails here, before the networks load
        result, weights, timings, photo, inversion = run_editor(plan, audio, text, settings, class_index)
        if photo is not None:
            result.input_image = photo[0]  # inverted here, not by the Editor: the folder shows the photo beside its reconstruction
        resolved = dict(result.settings)
        resolved.pop("seed", None)  # the Editor's seed seeds only an image source's inversion, done here (INVERSION_SEED)
        outputs = write_edit_folder(staging, result, video=settings.save_video, run=edit_run_record(
            "edit", command_line(), settings, resolved,
            source=source_record(plan, inversion),
            targets=[{"audio": str(path), "text": text} for path in audio] or [{"audio": None, "text": text}],
            weights=weights_record(weights),
            timings_s=timings,
        ))
    click.echo(f"wrote {len(outputs)} files to {plan.out}")
