"""Benchmark `sgsim evaluate`: edited images per second measured batched, against each image measured alone.

Edit folders are written in a temporary folder by sgsim's own path (Editor.edit(...).save, what `sgsim edit` writes):
--folders seeds, each edited toward --sounds sounds at --strengths strengths in 3 optimiser steps (their
quality does not matter here). Then the same images are measured two ways, on the same loaded networks, in this
process: (b) sgsim's measure over all the folders at once (each folder's images in one batch against its source's
features, every target and the neutral caption embedded once), and (a) each image alone (measure of that one image:
its source, its target and the neutral caption embedded again for it), the simplest honest way to evaluate. Networks
load before the timing; --repeats N interleaves N timings of each and reports the fastest. Both must give the same rows.

--world shapes: the shipped world (examples/worlds/shapes): its 32 px generator, CLIP and audio encoder, loaded offline
from its files, its own sounds, its judge reading every edit. --world full: networks of the sizes used on real
generators with seeded random weights built in-process (the speed does not depend on the weights): open_clip ViT-B/32,
sgsim-resnet18, ArcFace IR-SE50 (identity measured for every image), and the paper's demo sounds (tests/data/audio),
on 256 px pictures of a narrow generator (evaluation reads only the pictures, so the generator's width does not
matter). Both measure LPIPS-VGG16 (seeded random weights).

    python scripts/bench_evaluate.py --world full --threads 1
    python scripts/bench_evaluate.py --world shapes --threads 1
    python scripts/bench_evaluate.py --quick        # tiny networks, a few images: a smoke run, not a measurement
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from sgsim.editing import Editor, Target
from sgsim.evaluation.edits import Guide, ImageTask, Networks, find_runs, measure, plan
from sgsim.lpips import LpipsDistance

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_SOUNDS = REPOSITORY / "tests" / "data" / "audio"
AGREEMENT = 1e-4  # largest |difference| of a metric between the two ways that counts as the same row (float32, batch 1 vs N)


@dataclass(frozen=True)
class Scale:
    """How many edits to write: seeds (one folder each) x sounds x strengths images."""

    folders: int
    sounds: int
    strengths: tuple[float, ...]
    edit_steps: int


DEFAULT_SCALE = {"full": Scale(2, 2, (0.5, 1.0, 1.5), 3), "shapes": Scale(4, 3, (0.5, 1.0, 1.5, 2.0), 3)}
QUICK_SCALE = Scale(1, 2, (0.5, 1.0), 3)


@dataclass
class World:
    """What the edits are written with and measured by."""

    editor: Editor
    sounds: list[Path]
    networks: Networks  # the evaluation's networks, loaded before timing
    guide: Guide | None  # every run's guide (in-process networks), or None: each run's recorded one


def shapes_world(device: torch.device) -> World:
    """The shipped shapes world, loaded from its files as `sgsim edit --world shapes` loads it."""
    from sgsim.worlds import BUNDLE_ROOT, resolve_world

    files = resolve_world("shapes", BUNDLE_ROOT / "shapes")
    editor = Editor.from_pretrained(world="shapes", device=device)
    sounds = sorted(path for path in files.audio.glob("*.flac") if path.stem != "sequence")
    return World(editor, sounds, Networks(device, None, None, _lpips=_seeded(LpipsDistance).to(device)), None)


def full_world(device: torch.device, quick: bool) -> World:
    """Real-size networks with seeded random weights (tiny ones for --quick), 256 px pictures (--quick: 32 px)."""
    import open_clip

    from encoders.clip import ClipModel
    from encoders.registry import build_audio_encoder
    from sgsim.identity import ArcFace, IrSeConfig
    from stylegan2 import Generator

    resolution = 32 if quick else 256
    generator = _seeded(lambda: Generator(32, 0, 32, resolution, 3, mapping_kwargs={"num_layers": 2},
                                          synthesis_kwargs={"channel_base": 256, "channel_max": 32}))
    if quick:
        model = _seeded(lambda: open_clip.CLIP(
            embed_dim=512, quick_gelu=True,
            vision_cfg={"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}))
        arcface = _seeded(lambda: ArcFace(IrSeConfig(stem_channels=8, stages=((8, 1), (16, 1)), se_reduction=4, embedding_dim=32)))
        lpips = _seeded(lambda: LpipsDistance((8, 8, 16, 16, 16)))
    else:
        model = _seeded(lambda: open_clip.create_model("ViT-B-32-quickgelu", pretrained=None))
        arcface, lpips = _seeded(ArcFace), _seeded(LpipsDistance)
    encoder, clip = _seeded(lambda: build_audio_encoder("sgsim-resnet18")), ClipModel.from_open_clip(model)
    editor = Editor(generator, encoder, clip, device=device)
    guide = Guide("sgsim-resnet18", None, None)
    networks = Networks(device, None, None, guides={guide: (editor.audio_encoder, editor.clip)},
                        _identity=arcface.to(device).eval(), _lpips=lpips.to(device))
    return World(editor, sorted(DEMO_SOUNDS.glob("*.wav")), networks, guide)


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A network built with seed 0, in eval mode and without gradients."""
    torch.manual_seed(0)
    return build().eval().requires_grad_(False)


def write_edits(world: World, scale: Scale, root: Path) -> list[Path]:
    """One edit folder per seed, each toward the first `scale.sounds` sounds at every strength."""
    targets = [Target(audio=path) for path in world.sounds[:scale.sounds]]
    folders = []
    for seed in range(scale.folders):
        result = world.editor.edit(seed, targets, steps=scale.edit_steps, strengths=list(scale.strengths))
        result.save(root / f"seed{seed}")
        folders.append(root / f"seed{seed}")
    return folders


def timed(run: Callable[[], list[dict]]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    rows = run()
    return time.perf_counter() - start, rows


def largest_difference(alone: Sequence[dict], batched: Sequence[dict]) -> float:
    """The largest |difference| between the two ways' numbers (infinite where only one is NaN or a label differs)."""
    largest = 0.0
    for one, other in zip(alone, batched, strict=True):
        for key, value in one.items():
            if not isinstance(value, float):
                largest = largest if value == other[key] else math.inf
            elif not (math.isnan(value) and math.isnan(other[key])):
                difference = abs(value - other[key])
                largest = math.inf if math.isnan(difference) else max(largest, difference)
    return largest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=["full", "shapes"], default="full", help="which networks and pictures (default: %(default)s)")
    parser.add_argument("--folders", type=int, default=None, help="edit folders (seeds) to write")
    parser.add_argument("--sounds", type=int, default=None, help="sounds each folder is edited toward")
    parser.add_argument("--strengths", default=None, help="comma-separated strengths of every sound")
    parser.add_argument("--repeats", type=int, default=2, help="time each way this many times, interleaved; report the fastest")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny networks, a few images: a smoke run that finishes in seconds")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    default = QUICK_SCALE if args.quick else DEFAULT_SCALE[args.world]
    scale = Scale(args.folders or default.folders, args.sounds or default.sounds,
                  tuple(float(s) for s in args.strengths.split(",")) if args.strengths else default.strengths, default.edit_steps)
    world = shapes_world(device) if args.world == "shapes" else full_world(device, args.quick)
    with tempfile.TemporaryDirectory() as temporary:
        tasks: list[ImageTask] = plan(find_runs(write_edits(world, scale, Path(temporary))), world.guide, "on" if args.world == "full" else "auto")
        for guide in {task.guide for task in tasks}:  # load every network before timing
            world.networks.guide(guide)
        measure(tasks[:1], world.networks)  # untimed: first calls allocate and pick kernels
        alone_times, batched_times = [], []
        for _ in range(args.repeats):
            seconds, alone = timed(lambda: [row for task in tasks for row in measure([task], world.networks)])
            alone_times.append(seconds)
            seconds, batched = timed(lambda: measure(tasks, world.networks))
            batched_times.append(seconds)
    images = len(tasks)
    difference = largest_difference(alone, batched)
    print(f"{'smoke run, ' if args.quick else ''}world {args.world}: {images} images in {scale.folders} folders "
          f"({scale.sounds} sounds x {len(scale.strengths)} strengths each), {torch.get_num_threads()} threads")
    print(f"(a) each image alone: {images / min(alone_times):.2f} images/s ({min(alone_times):.2f} s)")
    print(f"(b) sgsim, batched:   {images / min(batched_times):.2f} images/s ({min(batched_times):.2f} s)")
    print(f"rows agree: largest difference {difference:.2e} (at most {AGREEMENT:g})")
    print(f"b/a: {min(alone_times) / min(batched_times):.2f}x the images per second")
    if difference > AGREEMENT:
        print(f"the two ways disagree by {difference:.2e}: a fault in measure, not a speed-up", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
