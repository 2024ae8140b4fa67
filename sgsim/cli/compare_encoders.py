"""`sgsim compare-encoders`: zero-shot and linear-probe accuracy of audio encoders on labelled datasets."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import click

from sgsim.cli.options import command_line, setting_option



def encoder_choices(values: tuple[str, ...]) -> list:
    """`[LABEL:]NAME[=CHECKPOINT]` items of --encoder as EncoderChoices with unique labels. Without LABEL an encoder is
    labelled by its NAME, and when NAME appears more than once by NAME (checkpoint stem, or 'released')."""
    from sgsim.evaluation.compare import EncoderChoice
    from sgsim.outputs import unique

    parsed = []
    for value in values:
        spec, sep, checkpoint = value.partition("=")
        label, _, name = spec.rpartition(":")
        if not name or (":" in spec and not label) or (sep and not checkpoint):
            raise click.UsageError(f"--encoder {value!r}: expected NAME or NAME=PATH, optionally labelled LABEL:NAME=PATH")
        parsed.append((label or None, name, Path(checkpoint) if checkpoint else None))
    names = [name for _, name, _ in parsed]
    defaults = [label or (name if names.count(name) == 1 else f"{name} ({checkpoint.stem if checkpoint else 'released'})")
                for label, name, checkpoint in parsed]
    return [EncoderChoice(name, checkpoint, label=shown) for (_, name, checkpoint), shown in zip(parsed, unique(defaults, " #"))]


def _world_speech(world: str) -> Path:
    """The held-out speech a world ships (speech/test.csv: voices its encoder never heard)."""
    from sgsim.worlds import resolve_world

    return resolve_world(world).root / "speech" / "test.csv"


def _world_encoder(world: str, encoders: tuple[str, ...], clips: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """The --encoder spec and --clip of a world's audio encoder and CLIP files; --encoder or --clip as well is refused."""
    from sgsim.worlds import WorldError, resolve_world

    given = [flag for flag, values in (("--encoder", encoders), ("--clip", clips)) if values]
    if given:
        raise WorldError(f"--world {world} brings its own audio encoder and CLIP; leave out {', '.join(given)}")
    files = resolve_world(world)
    return (f"{world}:{files.encoder_name}={files.encoder}",), str(files.clip)


def _clip_choices(values: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """`--clip PATH` (every encoder) and `--clip ENCODER=PATH` (one encoder) into a default and per-encoder table."""
    default, per_encoder = None, {}
    for value in values:
        name, sep, rest = value.partition("=")
        if sep and rest:
            per_encoder[name] = rest
        else:
            default = value
    return default, per_encoder


@click.command("compare-encoders")
@click.argument("datasets", nargs=-1, type=click.Path(path_type=Path))
@click.option("--encoder", "encoders", multiple=True, metavar="[LABEL:]NAME[=CHECKPOINT]",
              help="An encoder to compare (repeat), e.g. mine:sgsim-resnet18=runs/a/encoder.pt beside sgsim-resnet18; "
                   "the label names its rows (default: NAME, with the checkpoint's stem when NAME repeats). "
                   "Default: every encoder whose weights are present.")
@click.option("--clip", "clips", multiple=True, help="CLIP weights for every encoder (PATH) or some (NAME=PATH or LABEL=PATH); default: each encoder's own.")
@setting_option("world", help="Compare the audio encoder of a miniature world built by `sgsim world build` (shapes), "
                "in its own CLIP, instead of --encoder and --clip.")
@click.option("--prompts", type=click.Choice(["bare", "sound", "ensemble"]), default="sound", show_default=True,  # PROMPT_TEMPLATES, spelt out: no torch for --help
              help="Zero-shot prompt set.")
@click.option("--linear-probe/--no-linear-probe", default=True, show_default=True, help="Also fit a logistic regression per held-out fold.")
@click.option("--baseline-resnet50", is_flag=True, help="Also train the paper's supervised log-mel ResNet50 on the other folds (slow: one training per fold).")
@click.option("--baseline-epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Epochs of each baseline training.")
@click.option("--with-paper", is_flag=True, help="Show the paper's published numbers beside ours.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out/compare-encoders"), show_default=True, help="Report folder.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Embedding cache (default: <SGSIM_HOME>/embeddings).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached embeddings.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=min(4, os.cpu_count() or 1), show_default=True, help="Audio decoding processes.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,  # EMBEDDING_PRECISIONS, spelt out: no torch for --help
              help="Of the audio embeddings. bf16: the encoders' networks under bfloat16 autocast (front ends stay fp32), a forward "
                   "about 2x faster on a CPU with AVX512-BF16 or AMX, every embedding within cosine 0.999 of fp32's; its tables may "
                   "differ slightly from fp32 ones. Cached apart.")
def compare_encoders_command(datasets, encoders, clips, world, prompts, linear_probe, baseline_resnet50, baseline_epochs, with_paper, out, cache_dir, no_cache, device,
                             batch_size, workers, precision) -> None:
    """Zero-shot and linear-probe accuracy of audio encoders, per official fold and averaged.

    DATASETS: folders (ESC-50, UrbanSound8K, or a CSV of path,label); with --world and none given, the world's held-out speech.

    Under `torchrun --nproc_per_node N` each process embeds 1/N of the clips on its own device; rank 0 writes the report.
    """
    from tqdm import tqdm

    import checkpoints
    from sgsim.datasets import open_dataset
    from sgsim.distributed import current_rank, process_group, rank_device
    from sgsim.evaluation.compare import compare_encoders, default_choices
    from sgsim.evaluation.report import write_reports
    from sgsim.evaluation.supervised import SupervisedConfig
    from sgsim.outputs import RUN_RECORD, run_record, weights_record, write_json

    rank = current_rank()
    device = rank_device(rank, device)  # a bad --device fails before any encoder loads
    say = click.echo if rank.is_main else (lambda *args, **kwargs: None)  # every rank sees the same; rank 0 tells
    started = time.perf_counter()
    clip_default, clip_per_encoder = _clip_choices(clips)
    if world is not None:
        encoders, clip_default = _world_encoder(world, encoders, clips)
        datasets = datasets or (_world_speech(world),)
    if not datasets:
        raise click.UsageError("give one or more dataset folders (ESC-50, UrbanSound8K, or a folder with a CSV of path,label)")
    if encoders:
        choices, skipped = encoder_choices(encoders), []
    else:
        choices, skipped = default_choices()
    unknown = sorted(set(clip_per_encoder) - {c.name for c in choices} - {c.shown for c in choices} - {name for name, _ in skipped})
    if unknown:
        raise click.UsageError(f"--clip {unknown[0]}=...: {unknown[0]} is not among the encoders compared")
    choices = [replace(c, clip=clip_per_encoder.get(c.shown, clip_per_encoder.get(c.name, clip_default))) for c in choices]
    for name, reason in skipped:
        say(f"skipping {name}: {reason}", err=True)
    loaded = [open_dataset(path) for path in datasets]
    for dataset in loaded:
        for problem in dataset.problems:
            say(f"{dataset.root.name}: leaving out {problem.path}: {problem.reason}", err=True)
    cache_root = None if no_cache else (cache_dir or checkpoints.cache_dir() / "embeddings")
    bars = []

    def progress_factory(description: str, total: int):
        if bars:
            bars[-1].close()  # one bar per encoder and dataset, each finished before the next starts
        bars.append(tqdm(total=total, desc=description, unit="clip", disable=not rank.is_main))
        return bars[-1].update

    supervised = SupervisedConfig(epochs=baseline_epochs, batch_size=batch_size) if baseline_resnet50 else None
    with process_group(device) as rank:
        comparison = compare_encoders(
            choices, loaded, prompts, linear_probe, cache_root, str(device), batch_size, workers, progress_factory, supervised, precision
        )
    if bars:
        bars[-1].close()
    if not rank.is_main:
        return  # the other ranks' results are rank 0's: it reports them once
    for name, reason in comparison.skipped:
        click.echo(f"skipping {name}: {reason}", err=True)
    comparison.skipped[:0] = skipped
    reported = {problem.path for dataset in loaded for problem in dataset.problems}
    for result in comparison.results:
        for problem in result.problems:
            if problem.path not in reported:
                click.echo(f"{result.encoder} on {result.dataset}: left out {problem.path}: {problem.reason}", err=True)
    if not comparison.results:
        raise click.ClickException("no encoder could be evaluated; see the reasons above, download weights or pass --encoder NAME=CHECKPOINT")
    paths = write_reports(comparison, out, with_paper)
    write_json(out / RUN_RECORD, run_record(
        "compare-encoders", command_line(), world=world, datasets=[str(path) for path in datasets],
        encoders=[{"name": c.name, "label": c.shown, "checkpoint": c.checkpoint, "clip": c.clip} for c in choices],
        settings={"prompts": prompts, "linear_probe": linear_probe, "baseline_resnet50": baseline_resnet50,
                  "baseline_epochs": baseline_epochs, "precision": precision, "batch_size": batch_size},
        weights=weights_record({c.shown: c.checkpoint for c in choices if c.checkpoint is not None}),
        outputs=[path.name for path in paths] + [RUN_RECORD],
    ))
    paths.append(out / RUN_RECORD)
    click.echo((out / "encoders.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {', '.join(p.name for p in paths)} to {out} in {time.perf_counter() - started:.1f} s")
