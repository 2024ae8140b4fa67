"""`sgsim world build`: train a miniature world's networks from nothing, resumably."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("world")
def world_command() -> None:
    """Miniature worlds trained here, whose edits a judge that is not CLIP can score."""


@world_command.command("build")
@click.argument("name", type=click.Choice(["shapes"]))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the networks, speech and run.json; a killed build resumes there.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--scale", type=click.Choice(["toy", "full"]), default="full", show_default=True, help="toy: seconds, for checks; full: the shipped world.")
def build_command(name: str, out: Path, seed: int, scale: str) -> None:
    """Build a world: speech, generator, its e4e photo encoder, CLIP and audio encoder, each stage skipped once
    complete (the photo encoder retrained when the generator on disk changed)."""
    from tqdm import tqdm

    from sgsim.worlds.build import STAGES, WorldBuild

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int, values: dict) -> None:
        if stage not in bars:
            bars[stage] = tqdm(total=total, initial=done - 1, desc=stage, unit="step")
        bar = bars[stage]
        if values:
            bar.set_postfix({key: f"{value:.3f}" for key, value in values.items() if isinstance(value, float)}, refresh=False)
        bar.update(done - bar.n)

    build = WorldBuild(out, seed=seed, scale=scale, progress=progress)
    skipped = [stage for stage in STAGES if build.done(stage)]
    if skipped:
        click.echo(f"resuming: {', '.join(skipped)} already built in {out}")
    record = build.run()
    for bar in bars.values():
        bar.close()
    timings = ", ".join(f"{stage} {info['seconds']:.0f} s" for stage, info in record["stages"].items())
    click.echo(f"wrote {out}/run.json ({timings})")
