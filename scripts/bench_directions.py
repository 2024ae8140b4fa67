"""Benchmark learned sound directions against the baselines they replace, measured in the same run:

(a) applying a direction vs one plain synthesis of the same latent (goal: <= 1.1x), per resolution;
(b) learning one direction over 16 sources vs one per-image edit of the same step count (goal: < 4x);
(c) held-out generalisation: the direction's mean CLIP-loss gain on seeds it never saw as a fraction of the
    per-image optimisation's gain on those seeds (with random weights this checks the plumbing, not the quality).

Networks are seeded random weights built in-process (no downloads): StyleGAN2 config-f widths (channel_base
32768, max 512, 8 mapping layers), open_clip ViT-B/32 and the sgsim-resnet18 encoder; the sound is a real clip
from tests/data/audio. The scene preset (no identity network) is used. Warm-up runs are not timed. On the CPU the
times are the process's CPU seconds (stable on a shared machine), on a GPU wall seconds after synchronising.

    python scripts/bench_directions.py --device cpu                                  # docs/performance.md#instant-edits
    python scripts/bench_directions.py --device cuda --apply-resolutions 1024        # absolute apply time at 1024 px
    python scripts/bench_directions.py --device cpu --quick                          # tiny networks: a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from sgsim.editing import Editor, LatentSource, SoundDirection
from sgsim.checksums import state_sha256
from sgsim.editing.directions import architecture
from sgsim.editing.sources import seed_latent

DEFAULT_SOUND = Path(__file__).resolve().parents[1] / "tests" / "data" / "audio" / "raining.wav"


def build_generator(resolution: int, quick: bool):
    from stylegan2 import Generator

    torch.manual_seed(0)
    if quick:
        return Generator(32, 0, 32, resolution, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    return Generator(512, 0, 512, resolution, 3, mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512})


def build_encoders(quick: bool):
    import open_clip

    from encoders.clip import ClipModel
    from encoders.registry import build_audio_encoder

    torch.manual_seed(1)
    if quick:
        model = open_clip.CLIP(
            embed_dim=512, quick_gelu=True,
            vision_cfg={"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        )
    else:
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    return build_audio_encoder("sgsim-resnet18"), ClipModel.from_open_clip(model)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(runs: dict[str, Callable[[], object]], repeats: int, device: torch.device, warm: Optional[list[str]] = None) -> dict[str, float]:
    """Median seconds of each run over `repeats` rounds, after one untimed warm-up of each run in `warm` (default:
    all). The runs alternate within a round, so a machine whose load drifts slows all of them alike. On the CPU the
    seconds are this process's CPU time (all its threads): on a shared machine, wall time mostly measures the others."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for name in runs if warm is None else warm:
        runs[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = clock()
            run()
            sync(device)
            times[name].append(clock() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def random_direction(G, scale: float = 0.1) -> SoundDirection:
    """A direction of the right shape for G (applying costs the same whatever its values)."""
    torch.manual_seed(2)
    return SoundDirection(name="random", offset=scale * torch.randn(G.num_ws, G.w_dim), target=torch.zeros(512),
                          generator={"name": "bench", "architecture": architecture(G), "state_sha256": state_sha256(G)})


def bench_apply(resolution: int, args: argparse.Namespace, device: torch.device) -> dict:
    G = build_generator(resolution, args.quick).to(device).eval().requires_grad_(False)
    editor = Editor(G, None, None, device=device)
    direction = random_direction(G)
    w = seed_latent(G, 0)
    editor.apply(direction, LatentSource(w))  # the first apply hashes the weights once (the warning check); not timed

    def synthesis():
        with torch.no_grad():
            return G.synthesis(w[None], noise_mode="const").cpu()

    seconds = timed({"synthesis": synthesis, "apply": lambda: editor.apply(direction, LatentSource(w))}, args.repeats, device)
    return {"resolution": resolution, "synthesis_s": seconds["synthesis"], "apply_s": seconds["apply"],
            "ratio": seconds["apply"] / seconds["synthesis"]}


def bench_learning(args: argparse.Namespace, device: torch.device) -> dict:
    G = build_generator(args.resolution, args.quick)
    audio_encoder, clip = build_encoders(args.quick)
    editor = Editor(G, audio_encoder, clip, device=device, preset="landscape")
    sources = list(range(args.sources))
    learned: list[SoundDirection] = []
    runs = {"per_image": lambda: editor.edit(sources[0], args.sound, steps=args.steps)}
    for per_step in args.sources_per_step:
        runs[per_step] = lambda per_step=per_step: learned.append(editor.learn_direction(
            args.sound, sources, steps=args.steps, holdout=0, sources_per_step=per_step))
    # Only the per-image edit is warmed up (it loads the sound and touches every network): learning runs are long
    # enough that a warm-up of each would double the benchmark's time on a CPU.
    seconds = timed(runs, args.learn_repeats, device, warm=["per_image"])
    per_image = seconds.pop("per_image")
    results = {"steps": args.steps, "sources": args.sources, "per_image_edit_s": per_image,
               "learn": {per_step: {"learn_s": value, "ratio": value / per_image} for per_step, value in seconds.items()}}
    if args.holdout:
        held_out = list(range(args.sources, args.sources + args.holdout))
        results["holdout"] = editor.evaluate_directions([learned[-1]], held_out, steps=args.steps)[0]
    return results


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny networks (a smoke run, not a measurement)")
    parser.add_argument("--apply-resolutions", default="256,1024", help="resolutions of the apply measurement (config-f widths)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each apply / synthesis (median)")
    parser.add_argument("--learn-repeats", type=int, default=1, help="timed rounds of the learning measurement (median)")
    parser.add_argument("--resolution", type=int, default=256, help="resolution of the learning measurement")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps of the learning and per-image runs (equal)")
    parser.add_argument("--sources", type=int, default=16)
    parser.add_argument("--sources-per-step", default="16,4", help="comma-separated; 16 = every source at every step")
    parser.add_argument("--holdout", type=int, default=2, help="held-out seeds of the generalisation measurement (0: skip)")
    parser.add_argument("--sound", type=Path, default=DEFAULT_SOUND)
    parser.add_argument("--skip-learning", action="store_true")
    args = parser.parse_args(argv)
    args.sources_per_step = [int(v) for v in args.sources_per_step.split(",")]
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device} ({torch.get_num_threads()} threads){' --quick' if args.quick else ''}")
    for resolution in (int(r) for r in args.apply_resolutions.split(",")):
        if args.quick:
            resolution = 32
        row = bench_apply(resolution, args, device)
        print(f"apply {row['resolution']} px: synthesis {1000 * row['synthesis_s']:.1f} ms, apply {1000 * row['apply_s']:.1f} ms, "
              f"ratio {row['ratio']:.3f} (goal <= 1.1)")
    if args.skip_learning:
        return
    if args.quick:
        args.resolution = 32
    learned = bench_learning(args, device)
    print(f"learning at {args.resolution} px, {learned['steps']} steps: one per-image edit {learned['per_image_edit_s']:.2f} s")
    for per_step, row in learned["learn"].items():
        print(f"  one direction over {learned['sources']} sources, {per_step} per step: {row['learn_s']:.2f} s = "
              f"{row['ratio']:.2f} per-image edits (goal < 4)")
    if "holdout" in learned:
        held = learned["holdout"]
        fraction = held["gain_fraction"]
        print(f"held-out seeds {held['seeds']}: CLIP loss source {held['clip_source_mean']:.4f}, direction "
              f"{held['clip_direction_mean']:.4f}, per image {held['clip_per_image_mean']:.4f}; gain fraction "
              f"{'n/a' if fraction is None else f'{fraction:.2f}'} (random weights: plumbing, not quality)")


if __name__ == "__main__":
    main()
