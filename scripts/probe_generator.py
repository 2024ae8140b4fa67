"""The shapes world's generator stage with some settings changed, judged as the build judges it every few hundred
steps: `python scripts/probe_generator.py --set r1_gamma=2 --steps 2000 [--every 500] [--radius 6.5,9] [--device cuda]`.

It runs the build's stage for its seed (the same real pictures, latents and initialisation; sgsim.worlds.build) with
GanConfig fields changed by --set and, with --radius, the renders' size range changed, and prints one row per
checkpoint: the share of 1000 seeds judged clean, the colour x shape combinations drawn, the largest share over the
fair one and the shapes of the clean pictures. It is what docs/worlds.md's generator runs are re-measured with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from sgsim.worlds.shapes import RANGES, RenderRanges


def parse_settings(pairs: list[str]) -> dict:
    """`field=value` pairs -> GanConfig changes, each value of its field's type; a clear error for anything else."""
    from sgsim.worlds.gan_training import GanConfig

    types = {field.name: type(field.default) for field in dataclasses.fields(GanConfig)}
    changes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types or not value:
            raise SystemExit(f"--set {pair}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
        try:
            changes[name] = types[name](value)
        except ValueError:
            raise SystemExit(f"--set {pair}: {name} takes a {types[name].__name__}") from None
    return changes


def report_line(line: str) -> None:
    """Print a row at once, so a long run's progress shows in a log file too."""
    print(line, flush=True)


def probe(changes: dict, every: int, images: int, seed: int = 0, scale: str = "full", ranges: RenderRanges = RANGES,
          device: str | torch.device = "cpu", report=report_line) -> list[dict]:
    """Train the build's generator stage with `changes` on renders drawn from `ranges` to its steps (on `device`; the
    build itself trains on the CPU), judging `images` seeds of G_ema every `every` steps; returns (and reports) one row
    per checkpoint."""
    from sgsim.worlds.build import SCALES, generator_reals
    from sgsim.worlds.gan_training import GanConfig, GanTrainer
    from sgsim.worlds.metrics import generator_metrics
    from sgsim.worlds.shapes import RESOLUTION, SHAPES

    config = GanConfig(**{**dataclasses.asdict(SCALES[scale].gan), **changes, "seed": seed})
    rows = []
    with tempfile.TemporaryDirectory() as work:
        trainer = GanTrainer(config, generator_reals(seed, ranges), RESOLUTION, Path(work) / "gan_state.pt", device)
        started = time.perf_counter()
        while trainer.step < config.steps:
            trainer.train_to(max_steps=min(trainer.step + every, config.steps))
            judged = generator_metrics(trainer.G_ema, images, seed=seed)
            shapes = {shape: sum(n for name, n in judged["counts"].items() if name.endswith(shape)) for shape in SHAPES}
            row = {"step": trainer.step, "seconds": round(time.perf_counter() - started, 1), "clean": judged["clean"],
                   "combinations_present": judged["combinations_present"],
                   "largest_share_over_fair": judged["largest_share_over_fair"], "clean_shapes": shapes}
            rows.append(row)
            report(f"step {row['step']:>6}  clean {100 * row['clean']:5.1f} %  combinations {row['combinations_present']:>2} of 12  "
                   f"largest share {row['largest_share_over_fair']:.2f}  " + " ".join(f"{n} {s}s" for s, n in shapes.items())
                   + f"  ({row['seconds']:.0f} s)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a GanConfig field changed (repeatable)")
    parser.add_argument("--steps", type=int, help="train to this step (default: the build's)")
    parser.add_argument("--every", type=int, default=500, help="steps between judgements")
    parser.add_argument("--images", type=int, default=1000, help="seeds judged at each checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", choices=("toy", "full"), default="full")
    parser.add_argument("--radius", help="LOW,HIGH: the renders' equal-area radius range in pixels (default 4.5,8.5)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: a GPU trains on far more pictures in the same time")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    changes = parse_settings(args.set + ([f"steps={args.steps}"] if args.steps is not None else []))
    ranges = RANGES
    if args.radius:
        try:
            low, high = (float(value) for value in args.radius.split(","))
        except ValueError:
            raise SystemExit(f"--radius {args.radius}: expected LOW,HIGH in pixels") from None
        try:
            ranges = dataclasses.replace(RANGES, radius=(low, high))
        except ValueError as error:  # RenderRanges refuses an empty range or one whose shapes do not fit
            raise SystemExit(f"--radius {args.radius}: {error}") from None
    if min(args.every, args.images, changes.get("steps", 1)) < 1:
        raise SystemExit("--steps, --every and --images must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from sgsim.devices import parse_device
    from sgsim.errors import SgsimError

    try:
        device = parse_device(args.device)
    except SgsimError as error:
        raise SystemExit(str(error)) from None
    rows = probe(changes, args.every, args.images, args.seed, args.scale, ranges, device)
    if args.json:
        from sgsim.atomic import atomic_output

        with atomic_output(args.json) as stream:
            stream.write(json.dumps({"changes": changes, "radius": ranges.radius, "rows": rows}, indent=2).encode())


if __name__ == "__main__":
    main()
