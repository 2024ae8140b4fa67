"""`sgsim edit` and `sgsim generate`: sound-guided edits and seed images from the command line."""

from __future__ import annotations

import json
import math
import platform
import re
import time
from importlib import metadata
from pathlib import Path

import click
import numpy as np

from sgsim.atomic import staged_output_dir

# Packages whose versions decide the numbers of a run; recorded in run.json.
RECORDED_PACKAGES = ("sgsim", "torch", "torchvision", "torchaudio", "open_clip_torch", "numpy", "librosa", "soundfile", "pillow")
VIDEO_FRAMES = 50  # about this many optimisation snapshots go into --save-video's GIF
VIDEO_FRAME_MS = 80
SEED_MAX = 2**32 - 1  # numpy RandomState seeds, as NVIDIA's generate.py draws z


def parse_strengths(text: str) -> list[float]:
    """'0.5,1,1.5' -> [0.5, 1.0, 1.5]; anything else is a usage error naming the bad part."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers such as 0.5,1,1.5") from None
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r}: strengths must be finite numbers")
    return values


def _strength_option(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    return parse_strengths(value)


def file_stems(paths: list[Path]) -> list[str]:
    """A file-name-safe, unique stem per sound (a repeated stem gets -2, -3, ...)."""
    stems: list[str] = []
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "sound"
        candidate, n = stem, 1
        while candidate in stems:
            n += 1
            candidate = f"{stem}-{n}"
        stems.append(candidate)
    return stems


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a run's numbers, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def weights_record(files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Path and sha256 of every weights file a run loaded."""
    from checkpoints.download import sha256_file

    return {component: {"path": str(path), "sha256": sha256_file(path)} for component, path in files.items()}


def write_json(path: Path, data: dict) -> None:
    """Write a JSON report atomically."""
    from sgsim.atomic import atomic_output

    with atomic_output(path) as stream:
        stream.write((json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to a .npz file atomically."""
    from sgsim.atomic import atomic_output

    with atomic_output(path) as stream:
        np.savez(stream, **arrays)


def write_gif(path: Path, frames: list) -> None:
    """Write optimisation snapshots ([N, 3, H, W] each, shown side by side) as a looping GIF, atomically."""
    from PIL import Image

    from sgsim.atomic import atomic_output
    from sgsim.images import to_uint8

    pictures = [Image.fromarray(np.concatenate(list(to_uint8(frame)), axis=1)) for frame in frames]
    with atomic_output(path) as stream:
        pictures[0].save(stream, format="GIF", save_all=True, append_images=pictures[1:], duration=VIDEO_FRAME_MS, loop=0)


def write_edit_images(folder: Path, result, audio: list[Path], strengths: list[float]) -> list[str]:
    """source.png, <sound stem>_s<strength>.png per target and strength, and comparison.png (all side by side,
    labelled with the sound's file name); returns the file names written."""
    from sgsim.images import write_grid, write_png

    write_png(folder / "source.png", result.source_image)
    names, images, labels = ["source.png"], [result.source_image], ["source"]
    for t, (stem, path) in enumerate(zip(file_stems(audio), audio)):
        for s, strength in enumerate(strengths):
            names.append(f"{stem}_s{strength:g}.png")
            write_png(folder / names[-1], result.images[t, s])
            images.append(result.images[t, s])
            labels.append(f"{path.name} x{strength:g}")
    write_grid(folder / "comparison.png", images, labels)
    return names + ["comparison.png"]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out} is a file; pass a folder")


@click.command("edit")
@click.option("--audio", "audio", multiple=True, type=click.Path(path_type=Path), help="Sound to edit toward (repeat for several).")
@click.option("--text", default=None, help="Text mixed with every sound (see --mix).")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="Source image to invert and edit.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help="Source: the generator's image of this seed (truncation 0.7).")
@click.option("--latent", type=click.Path(path_type=Path), default=None, help="Source: a W or W+ latent (.npz from sgsim edit/generate or the ADA projector).")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class of the --seed image (conditional generators only).")
@click.option("--invert-steps", type=click.IntRange(min=1), default=1000, show_default=True, help="Inversion steps for --image.")
@click.option("--generator", default="ffhq", show_default=True, help="Generator: manifest name or checkpoint path.")
@click.option("--encoder", default="sgsim-resnet18", show_default=True, help="Audio encoder name.")
@click.option("--encoder-checkpoint", type=click.Path(path_type=Path), default=None, help="Audio encoder weights (default: the encoder's released weights).")
@click.option("--clip", "clip_weights", default=None, help="CLIP weights path (default: the model the encoder's space belongs to).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default: out/<first sound's name>).")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--lambda-latent", type=click.FloatRange(min=0), default=None, help="Latent distance weight (default: the generator's preset).")
@click.option("--lambda-id", type=click.FloatRange(min=0), default=None, help="Identity loss weight (default: the generator's preset).")
@click.option("--strength", "strengths", default="1", callback=_strength_option, show_default=True, help="Comma-separated edit strengths, e.g. 0.5,1,1.5.")
@click.option("--mix", type=click.Choice(["weighted", "layers"]), default="weighted", show_default=True, help="How a sound and --text combine.")
@click.option("--loudness-strength", is_flag=True, help="Scale each strength by the sound's loudness (-20 dBFS = 1).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--save-video", is_flag=True, help="Also write optimisation.gif.")
@click.option("--precision", type=click.Choice(["fp32", "mixed", "bf16"]), default=None,
              help="Of the optimisation. mixed: fp16 generator blocks and CLIP autocast (CUDA only); bf16: bfloat16 generator "
                   "autocast (fast on CPUs with AVX512-BF16 or AMX). Default: mixed on CUDA, fp32 on the CPU.")
def edit_command(audio, text, image, seed, latent, class_index, invert_steps, generator, encoder, encoder_checkpoint, clip_weights, out,
                 steps, lr, lambda_latent, lambda_id, strengths, mix, loudness_strength, device, save_video, precision) -> None:
    """Edit an image so that it shows a sound."""
    from tqdm import tqdm

    from sgsim.editing import Editor, Target
    from sgsim.audio import audio_duration
    from sgsim.editing.sources import NOISE_PREFIX, read_latent_file

    sources = {"--seed": seed, "--image": image, "--latent": latent}
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) != 1:
        raise click.UsageError(f"pass exactly one source, --seed N, --image FILE or --latent FILE; got {len(given)} ({', '.join(given) or 'none'})")
    if not audio:
        raise click.UsageError("pass at least one --audio FILE")
    out = out if out is not None else Path("out") / file_stems([audio[0]])[0]
    _check_out(out)
    for path in audio:
        audio_duration(path)  # a missing or unreadable sound fails now, before the networks load

    started = time.perf_counter()
    editor = Editor.from_pretrained(generator, encoder, encoder_checkpoint=encoder_checkpoint, clip=clip_weights, device=device)
    loaded = time.perf_counter()
    source, noise = (seed, None) if seed is not None else (image, None) if image is not None else read_latent_file(latent)
    targets = [Target(audio=path, text=text) for path in audio]
    with tqdm(total=steps, desc="edit", unit="step", leave=False) as bar:
        def on_step(step: int, losses: dict[str, float]) -> None:
            bar.set_postfix(loss=f"{losses['total']:.4f}", clip=f"{losses['clip']:.4f}", refresh=False)
            bar.update(1)

        result = editor.edit(
            source, targets, steps=steps, lr=lr, lambda_latent=lambda_latent, lambda_id=lambda_id,
            callback=on_step, mix=mix, strengths=strengths, loudness_strength=loudness_strength,
            record_every=max(1, steps // VIDEO_FRAMES) if save_video else 0, invert_steps=invert_steps, noise=noise,
            precision=precision, class_index=class_index,
        )
    edited = time.perf_counter()

    with staged_output_dir(out) as staging:
        outputs = write_edit_images(staging, result, list(audio), strengths)
        write_npz(
            staging / "latents.npz", source=result.source_latent.numpy(), edited=result.edited_latents.numpy(),
            strengths=result.strengths.numpy(), swept=result.latents.numpy(),
            **{f"{NOISE_PREFIX}{name}": value.numpy() for name, value in result.noise.items()},
        )
        outputs.append("latents.npz")
        if save_video:
            write_gif(staging / "optimisation.gif", result.frames)
            outputs.append("optimisation.gif")
        write_json(staging / "run.json", {
            "command": "edit",
            "source": {"seed": seed, "image": image, "latent": latent, "invert_steps": invert_steps if image else None},
            "targets": [{"audio": str(path), "text": text} for path in audio],
            "generator": generator, "encoder": encoder, "encoder_checkpoint": encoder_checkpoint, "clip": clip_weights,
            "settings": result.settings,
            "versions": package_versions(),
            "weights": weights_record(editor.weight_files),
            "final_losses": {guide: {name: float(values[-1, g]) for name, values in result.losses.items()}
                             for g, guide in enumerate(result.guides)},
            "timings_s": {"load": loaded - started, "edit": edited - loaded, "write": time.perf_counter() - edited},
            "outputs": outputs + ["run.json"],
        })
    click.echo(f"wrote {len(outputs) + 1} files to {out}")


@click.command("generate")
@click.option("--seed", "seeds", type=click.IntRange(0, SEED_MAX), multiple=True, required=True, help="Seed to draw (repeat for several).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--generator", default="ffhq", show_default=True, help="Generator: manifest name or checkpoint path.")
@click.option("--truncation", type=float, default=0.7, show_default=True, help="psi toward w_avg (1 = none); 0.7 matches sgsim edit --seed.")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class to draw (conditional generators only).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
def generate_command(seeds, out, generator, truncation, class_index, device) -> None:
    """Draw the generator's images of some seeds, with their W+ latents for `sgsim edit --latent`."""
    import torch

    from checkpoints import resolve
    from sgsim.editing.sources import seed_latent
    from sgsim.images import write_png
    from stylegan2 import load_generator

    _check_out(out)
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G = load_generator(resolve(generator), device=device).eval()
    latents = [seed_latent(G, seed, truncation=truncation, class_index=class_index) for seed in seeds]  # a bad class fails before any output
    with staged_output_dir(out) as staging:
        for seed, w in zip(seeds, latents):
            with torch.no_grad():
                image = G.synthesis(w[None], noise_mode="const")
            write_png(staging / f"seed{seed:04d}.png", image)
            write_npz(staging / f"seed{seed:04d}.npz", w=w.cpu().numpy())
    click.echo(f"wrote {2 * len(seeds)} files to {out}")
