"""`sgsim video`: an MP4 whose picture follows a sound track over time, with the track as its audio."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sgsim.cli.options import SEED_MAX, camera_option, command_line, device_option, edit_options, transform_options
from sgsim.settings import MAX_STEPS, PHOTO_SETTINGS, EditSettings
from sgsim.editing.video_settings import (DEFAULT_FPS, DEFAULT_KEYFRAME_BATCH, DEFAULT_KEYFRAME_EVERY, DEFAULT_SMOOTHNESS, DEFAULT_STEPS,
                                          DEFAULT_WARM_STEPS, DEFAULT_WINDOW, MAX_FPS)

STAGES = {"embed": ("embed", "window"), "optimise": ("optimise", "step"), "render": ("render", "frame")}  # stage -> bar label, unit


def record_path(out: Path) -> Path:
    """clip.mp4 -> clip.json: the run record written beside the video."""
    return out.with_suffix(".json")


def check_video_out(out: Path, overwrite: bool) -> None:
    """--out must be an .mp4 file path; an existing one (or its .json) is replaced only if an earlier `sgsim video`
    wrote it, or with --overwrite."""
    if out.is_dir() or record_path(out).is_dir():
        raise click.UsageError(f"--out {out}: {out if out.is_dir() else record_path(out)} is a folder; pass a file path such as {out / 'clip.mp4' if out.is_dir() else 'clip.mp4'}")
    if out.suffix.lower() != ".mp4":
        raise click.UsageError(f"--out {out}: the video is written as MP4; pass a path ending in .mp4, e.g. clip.mp4")
    taken = [path for path in (out, record_path(out)) if path.exists()]
    from sgsim.outputs import is_record_of

    if taken and not overwrite and not is_record_of(record_path(out), "video"):
        raise click.UsageError(f"--out {out}: {taken[0]} exists and sgsim video did not write it; pass another --out, or --overwrite")


class ProgressBars:
    """progress(stage, done, total) of sgsim.editing.video rendered as one tqdm bar per stage."""

    def __init__(self):
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage not in self.bars:
            label, unit = STAGES[stage]
            self.bars[stage] = tqdm(total=total, desc=label, unit=unit, leave=False)
        bar = self.bars[stage]
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


@click.command("video")
@click.option("--audio", type=click.Path(path_type=Path), required=True, help="The sound track the picture follows; muxed into the MP4.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help="Source: the generator's image of this seed (truncation 0.7).")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="Source image to invert.")
@click.option("--latent", default=None, metavar="FILE[:KEY]", help="Source: a W or W+ latent in a .npz (as for sgsim edit).")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class of the --seed image (conditional generators only).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The MP4 to write; its run record goes beside it as .json.")
@click.option("--overwrite", is_flag=True, help="Replace --out (and its .json) even if sgsim video did not write them.")
@click.option("--fps", type=click.FloatRange(0, MAX_FPS, min_open=True), default=DEFAULT_FPS, show_default=True, help="Frames per second.")
@click.option("--keyframe-every", type=click.FloatRange(0, min_open=True), default=DEFAULT_KEYFRAME_EVERY, show_default=True,
              help="Seconds between keyframes; frames between them are interpolated in W+.")
@click.option("--window", type=click.FloatRange(0.1), default=None,
              help=f"Seconds of the track around each keyframe that its target is embedded from (default: {DEFAULT_WINDOW:g}, "
                   "or the --world's own).")
@click.option("--strength", type=click.FloatRange(-10, 10), default=1.0, show_default=True, help="Edit strength of every keyframe.")
@click.option("--smoothness", type=click.FloatRange(min=0), default=DEFAULT_SMOOTHNESS, show_default=True,
              help="Weight of the temporal smoothness term between neighbouring keyframes.")
@click.option("--loudness/--no-loudness", default=True, show_default=True, help="Scale each keyframe's strength by its window's loudness.")
@click.option("--direction", "direction_spec", default=None, metavar="FILE[:NAME]",
              help="A learned direction (.sgdir from sgsim direction): each keyframe starts moved along it as far as its "
                   "window sounds like the direction's sound; with --steps 0 that is the whole edit (no optimisation).")
@transform_options
@camera_option
@device_option
@click.option("--keyframe-batch", type=click.IntRange(min=1), default=DEFAULT_KEYFRAME_BATCH, show_default=True,
              help="Keyframes optimised together, in time order; each later batch starts from the keyframe before it.")
@click.option("--warm-steps", type=click.IntRange(1, MAX_STEPS), default=DEFAULT_WARM_STEPS, show_default=True,
              help="Optimisation steps of each keyframe batch after the first (warm-started; at most --steps).")
@edit_options("networks", "optimisation", "resolution", names=PHOTO_SETTINGS,
              steps={"default": DEFAULT_STEPS, "low": 0, "help": "Optimisation steps of the keyframes (0 only with --direction).",
                     "metavar": "N"})
def video_command(audio, seed, image, latent, class_index, out, overwrite, fps, keyframe_every, window, strength, smoothness,
                  loudness, direction_spec, translate, rotate, camera, device, keyframe_batch, warm_steps,
                  settings: EditSettings) -> None:
    """Make a video whose picture follows a sound track over time.

    Keyframes every --keyframe-every seconds aim at the --window seconds of the track around them; quiet windows
    keep the source. Writes --out (H.264 with the track as AAC) and its run record (.json) beside it, together.
    """
    from dataclasses import replace

    from sgsim.atomic import staged_output_files
    from sgsim.camera import Camera, require_movable
    from sgsim.audio import check_long_enough
    from sgsim.editing import Editor
    from sgsim.editing.plan import plan_edit, source_record
    from sgsim.editing.video import (check_timing, check_video_steps, keyframe_times, require_audible, window_levels,
                                     write_video)
    from sgsim.losses import check_weights
    from sgsim.outputs import edit_run_record, weights_record, write_json

    check_video_out(out, overwrite)
    steps = settings.steps
    check_video_steps(steps)
    if steps == 0 and direction_spec is None:
        raise click.UsageError("--steps 0 leaves nothing to do without --direction; pass --steps N or a --direction FILE")
    direction = None
    if direction_spec is not None:
        from sgsim.editing.directions import SoundDirection

        direction = SoundDirection.from_spec(direction_spec)
    from sgsim.worlds import video_window

    window = video_window(window, settings.world)
    check_timing(fps, keyframe_every, window)
    weights = check_weights({**settings.loss_weights, **{name: value for name, value in (("latent", settings.lambda_latent),
                                                                                          ("id", settings.lambda_id)) if value is not None}})
    smoothness = weights.pop("smoothness", smoothness)  # --weight smoothness=X is --smoothness X
    plan = plan_edit((audio,), None, image, seed, latent, class_index, settings, device, out)
    require_audible(audio, window_levels(audio, keyframe_times(check_long_enough(audio), keyframe_every), window), window)
    with staged_output_files([out, record_path(out)]) as (staged_video, staged_record):
        started = time.perf_counter()
        editor = Editor.from_pretrained(settings.generator, settings.encoder, encoder_checkpoint=settings.encoder_checkpoint,
                                        clip=settings.clip_weights, device=plan.device, preset=settings.preset)
        click.echo(f"preset {editor.preset_name} ({editor.preset_reason})")
        motion = Camera(translate=translate or (0.0, 0.0), rotate=rotate, pan=tuple((camera or (0.0, 0.0, 0.0))[:2]),
                        spin=(camera or (0.0, 0.0, 0.0))[2])
        require_movable(editor.generator, motion)
        loaded = time.perf_counter()
        bars = ProgressBars()
        try:
            clip = editor.video(audio, plan.source, fps=fps, keyframe_every=keyframe_every, window=window, strength=strength,
                                smoothness=smoothness, loudness=loudness, steps=steps, lr=settings.lr, weights=weights,
                                invert_steps=settings.invert_steps, class_index=class_index, precision=settings.precision,
                                adaptive_layer_masking=settings.adaptive_layer_masking, direction=direction,
                                progress=bars, keyframe_batch=keyframe_batch, warm_steps=warm_steps,
                                work_resolution=settings.work_resolution)
            made = time.perf_counter()
            if not motion.is_identity:  # the picture moves when rendered; the edit was optimised on the still view
                clip = replace(clip, camera=motion, settings={**clip.settings, "camera": motion.record()})
            frames = write_video(staged_video, clip, progress=bars)
        finally:
            bars.close()
        rendered = time.perf_counter()
        write_json(staged_record, edit_run_record(
            "video", command_line(), settings, clip.settings,
            audio={"path": str(audio), "sha256": _sha256(audio), "duration_s": clip.duration},
            source=source_record(plan, editor.inversions[-1] if editor.inversions else None),
            direction=direction_spec,
            weights=weights_record(editor.weight_files),
            video={"path": out.name, "frames": frames, "fps": clip.fps, "duration_s": frames / clip.fps, "codec": "h264", "audio_codec": "aac"},
            keyframes=[{"time_s": float(t), "audible": bool(a), "level_dbfs": float(level) if level > -1e9 else None,
                        "strength": float(s), "final_losses": {name: float(values[-1, k]) for name, values in clip.losses.items()}}
                       for k, (t, a, level, s) in enumerate(zip(clip.keyframe_times, clip.audible, clip.levels_dbfs, clip.strengths))],
            timings_s={"load": loaded - started, "keyframes": made - loaded, "render": rendered - made,
                       "seconds_per_video_second": (rendered - loaded) / clip.duration},
            outputs=[out.name, record_path(out).name],
        ))
    click.echo(f"wrote {out} ({frames} frames, {clip.duration:.2f} s, {len(clip.keyframe_times)} keyframes) and {record_path(out).name}")


def _sha256(path: Path) -> str:
    from checkpoints.download import sha256_file

    return sha256_file(path)
