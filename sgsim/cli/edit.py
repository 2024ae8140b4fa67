"""`sgsim edit`: sound-guided (and text-guided) edits of a seed image, a latent or a photo."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import click

from sgsim.cli.options import (MAX_STEPS, SEED_MAX, align_option, command_line, device_option, file_stems, fresh_folder,
                               out_option, parse_strengths, refine_steps_option, safe_stem, steps_option, weight_option)
from sgsim.outputs import VIDEO_FORMATS

VIDEO_FRAMES = 50  # about this many optimisation snapshots go into --save-video's video
# Seconds around a sound's centre checked for silence before any network loads (the editor checks the
# encoder's own window again; this catches the usual case, a silent file, in a second instead of a minute).
AUDIO_CHECK_SECONDS = 10.0
INVERSION_SEED = 0  # seeds the inversion of an --image (initial noise, w exploration noise)


def _strength_option(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    return parse_strengths(value)


@dataclass
class EditPlan:
    """Everything `sgsim edit` checked before loading a network: the source, the targets, where to write."""

    source: object  # sgsim.editing SeedSource, ImageSource or LatentSource (with the noise stored beside the latent)
    latent_key: Optional[str] = None  # which array of the latent file
    align: Optional[bool] = None  # an ImageSource's FFHQ face alignment (sgsim.alignment.should_align); None otherwise
    stems: list[str] = field(default_factory=list)  # file stem per target (the default folder is named after the first)
    device: object = None  # torch.device
    out: Optional[Path] = None


def check_sound(path: Path) -> None:
    """A missing, unreadable, empty, too short or silent sound fails now, naming the file, before the networks load."""
    from sgsim.audio import check_long_enough, check_not_silent, load_centred_window

    check_long_enough(path)
    check_not_silent(load_centred_window(path, None, True, AUDIO_CHECK_SECONDS), path)


def plan_edit(audio: tuple[Path, ...], text: Optional[str], image: Optional[Path], seed: Optional[int], latent: Optional[str],
              class_index: Optional[int], mix: str, precision: Optional[str], device: Optional[str], out: Optional[Path],
              preset: Optional[str], generator: str, align: Optional[bool] = None) -> EditPlan:
    """Check every flag and input that can be checked without the networks, cheapest first."""
    from sgsim.devices import choose_precision, parse_device
    from sgsim.editing.presets import choose_preset
    from sgsim.editing.sources import ImageSource, LatentSource, SeedSource

    sources = {"--seed": seed, "--image": image, "--latent": latent}
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) != 1:
        raise click.UsageError(f"pass exactly one source, --seed N, --image FILE or --latent FILE[:KEY]; got {len(given)} ({', '.join(given) or 'none'})")
    if not audio and not text:
        raise click.UsageError("pass at least one --audio FILE, or a --text to edit toward")
    if mix == "layers" and not (audio and text):
        raise click.UsageError("--mix layers mixes a sound-guided and a text-guided edit: every target needs both audio and text; "
                               "pass --audio and --text")
    if class_index is not None and seed is None:
        raise click.UsageError("--class picks the label of a --seed source; a latent or an image has none, leave out --class")
    plan = EditPlan(source=SeedSource(seed), device=parse_device(device))
    choose_precision(precision, plan.device)
    if preset is not None:
        choose_preset(preset, generator)  # an unknown --preset fails here
    for path in audio:
        check_sound(path)
    if image is not None:
        from sgsim.alignment import import_faces_extra, should_align
        from sgsim.images import check_image

        check_image(image)
        plan.source, tag = ImageSource(image), safe_stem(image.stem, "image")
        plan.align = should_align(generator, align)
        if plan.align:
            import_faces_extra()  # a missing 'faces' extra fails now, with its install line
    elif latent is not None:
        from sgsim.latents import read_latent_file, split_latent_spec

        stored = read_latent_file(latent)
        plan.source, plan.latent_key = LatentSource(stored.latent, stored.noise), stored.key
        tag = safe_stem(split_latent_spec(latent)[0].stem, "latent")
    else:
        tag = f"seed{seed}"
    if audio:
        plan.stems = file_stems(list(audio))
    else:
        plan.stems = [safe_stem(text, "text")]
    plan.out = out if out is not None else fresh_folder(f"{plan.stems[0]}-{tag}")
    return plan


def _check_weights(generator: str, encoder: str, encoder_checkpoint: Optional[Path], clip_weights: Optional[str]) -> None:
    """Every weights file the edit needs that is missing, named at once (with URLs), rather than one per attempt."""
    from checkpoints import resolve_all
    from encoders import available

    info = {item.name: item for item in available()}.get(encoder)
    needed = [generator]
    if info is not None:
        needed += [encoder_checkpoint or info.weights, clip_weights or info.clip_weights]
    resolve_all([name for name in dict.fromkeys(needed) if name is not None])


# Seconds per optimisation step of a 256 px edit measured on a 2-core CPU (README, Performance: 13.6 s per 10 fp32
# steps); a step's cost grows about with the pixel count, which is what the warning below scales by.
CPU_SECONDS_PER_STEP_256 = 1.36
SLOW_CPU_RESOLUTION = 1024


def warn_slow_cpu_edit(resolution: int, device, steps: int) -> None:
    """Say before it starts that a full-resolution edit on a CPU takes hours, and what to do instead."""
    if str(device).startswith("cpu") and resolution >= SLOW_CPU_RESOLUTION:
        hours = CPU_SECONDS_PER_STEP_256 * (resolution / 256) ** 2 * steps / 3600
        click.echo(f"note: a {resolution} px edit on the CPU takes roughly {hours:.0f} h for {steps} steps on 2 cores "
                   f"(estimated from the measured 256 px rate); a GPU takes minutes, and fewer --steps help", err=True)


def run_editor(plan: EditPlan, audio, text, generator, encoder, encoder_checkpoint, clip_weights, preset, steps, lr, lambda_latent,
               lambda_id, loss_weights, strengths, mix, loudness_strength, save_video, precision, class_index, invert_steps, refine_steps):
    """Load the networks, invert an --image (under its own progress bar) and edit: the one place this command calls
    the Editor. Returns (result, weights files, timings, the inverted photo [1, 3, R, R] or None)."""
    from tqdm import tqdm

    from sgsim.cli.invert import invert_photo
    from sgsim.editing import Editor, Target
    from sgsim.editing.sources import ImageSource, LatentSource, SeedSource, class_label

    started = time.perf_counter()
    _check_weights(generator, encoder, encoder_checkpoint, clip_weights)
    editor = Editor.from_pretrained(generator, encoder, encoder_checkpoint=encoder_checkpoint, clip=clip_weights, device=plan.device,
                                    preset=preset, check_generator=lambda G: class_label(G, class_index) if isinstance(plan.source, SeedSource) else None)
    click.echo(f"preset {editor.preset_name} ({editor.preset_reason})")
    click.echo("loaded " + ", ".join(f"{name} {path}" for name, path in editor.weight_files.items()))
    warn_slow_cpu_edit(editor.generator.img_resolution, editor.device, steps)
    loaded = time.perf_counter()
    source, photo, inversion_files, timings = plan.source, None, {}, {"load": loaded - started}
    if isinstance(source, ImageSource):  # inverted here rather than inside editor.edit, to show its progress
        photo, inversion, lpips_file = invert_photo(editor.generator, source.image, plan.align, invert_steps, refine_steps,
                                                    INVERSION_SEED)
        source = LatentSource(inversion.w_plus[0], inversion.noise)
        inversion_files = {"lpips": lpips_file} if lpips_file is not None else {}
        timings["invert"] = time.perf_counter() - loaded
    inverted = time.perf_counter()
    targets = [Target(audio=path, text=text) for path in audio] if audio else [Target(text=text)]
    with tqdm(total=steps, desc="edit", unit="step", leave=False) as bar:
        def on_step(step: int, losses: dict[str, float]) -> None:
            bar.set_postfix(loss=f"{losses['total']:.4f}", clip=f"{losses['clip']:.4f}", refresh=False)
            bar.update(1)

        result = editor.edit(
            source, targets, steps=steps, lr=lr, lambda_latent=lambda_latent, lambda_id=lambda_id, weights=loss_weights,
            callback=on_step, mix=mix, strengths=strengths, loudness_strength=loudness_strength,
            record_every=max(1, steps // VIDEO_FRAMES) if save_video else 0, precision=precision,
            class_index=class_index,  # as an argument, not in SeedSource: the Editor records the argument in settings
        )
    timings["edit"] = time.perf_counter() - inverted
    return result, {**editor.weight_files, **inversion_files}, timings, photo


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


@click.command("edit")
@click.option("--audio", "audio", multiple=True, type=click.Path(path_type=Path), help="Sound to edit toward (repeat for several).")
@click.option("--text", default=None, help="Text mixed with every sound (see --mix), or the only target when no --audio is given.")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="Source image to invert and edit.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help="Source: the generator's image of this seed (truncation 0.7).")
@click.option("--latent", default=None, metavar="FILE[:KEY]",
              help="Source: a W or W+ latent in a .npz (sgsim generate/invert 'w', the ADA projector's projected_w.npz). "
                   "An edit's latents.npz continues from its first edited latent; FILE:edited[N] picks another, FILE:source its start.")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class of the --seed image (conditional generators only).")
@out_option(required=False, default_help=" (default: a new folder out/<sound or text>-<source>, -2, -3... if taken)")
@edit_settings
def edit_command(audio, text, image, seed, latent, class_index, invert_steps, refine_steps, align, generator, encoder, encoder_checkpoint, clip_weights, preset, out,
                 overwrite, steps, lr, lambda_latent, lambda_id, loss_weights, strengths, mix, loudness_strength, device, save_video,
                 precision) -> None:
    """Edit an image so that it shows a sound, a text or both.

    Writes source.png (for --image: input.png, the photo as inverted, and source.png, its reconstruction), one PNG per
    target and strength, comparison.png, latents.npz ('source', 'edited', 'swept', 'strengths', the source's 'noise.*'),
    run.json and with --save-video optimisation.mp4 (or .gif).
    """
    from sgsim.atomic import staged_output_dir
    from sgsim.editing.folder import write_edit_folder
    from sgsim.outputs import is_run_folder, run_record, weights_record

    plan = plan_edit(audio, text, image, seed, latent, class_index, mix, precision, device, out, preset, generator, align)
    with staged_output_dir(plan.out, overwrite, is_run_folder) as staging:  # an unusable --out fails here, before the networks load
        result, weights, timings, photo = run_editor(plan, audio, text, generator, encoder, encoder_checkpoint, clip_weights, preset,
                                                    steps, lr, lambda_latent, lambda_id, loss_weights, strengths, mix, loudness_strength,
                                                    save_video, precision, class_index, invert_steps, refine_steps)
        if photo is not None:
            result.input_image = photo[0]  # inverted here, not by the Editor: the folder shows the photo beside its reconstruction
        settings = dict(result.settings)
        settings.pop("seed", None)  # the Editor's seed seeds only an image source's inversion, done here (INVERSION_SEED)
        outputs = write_edit_folder(staging, result, video=save_video, run=run_record(
            "edit", command_line(),
            source={"seed": seed, "image": image, "latent": latent, "latent_key": plan.latent_key, "class": class_index,
                    "invert_steps": invert_steps if image else None, "refine_steps": refine_steps if image else None,
                    "align": plan.align, "inversion_seed": INVERSION_SEED if image else None},
            targets=[{"audio": str(path), "text": text} for path in audio] or [{"audio": None, "text": text}],
            generator=generator, encoder=encoder, encoder_checkpoint=encoder_checkpoint, clip=clip_weights,
            settings=settings, weights=weights_record(weights),
            timings_s=timings,
        ))
    click.echo(f"wrote {len(outputs)} files to {plan.out}")
