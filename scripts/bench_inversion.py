"""Benchmark photo inversion: seconds per step of the W fit and of the W+ refinement, and what the default
optimisation (`sgsim invert --method optimise`: 1000 W steps + 300 W+ steps) therefore costs; the time of an e4e
inversion (FFHQ-size encoder, one forward pass and one render) and the ratio of the two, measured in the same run;
plus the face alignment when sgsim[faces] is installed.

The generator has the FFHQ config-f widths (8 mapping layers, channel_base 32768, channel_max 512) at the
chosen resolution and LPIPS is the full VGG16, both with seeded random weights built in-process (no downloads):
the cost of a step does not depend on the weights. The target is the test face photo. A two-step warm-up
inversion is not timed. The ratio W+ / W compares the two stages measured in the same run. Wall seconds grow
with other jobs on the machine; CPU seconds (summed over threads) do not, and bound a quiet machine's wall
time from above (one thread) and below (perfect use of every thread).

    python scripts/bench_inversion.py                      # 256 px, the CPU measurement quoted in the README
    python scripts/bench_inversion.py --resolution 1024    # FFHQ size
    python scripts/bench_inversion.py --quick              # the tiny test networks: a smoke run, not a measurement

World mode measures reconstruction, not just time, with a miniature world's own trained networks: its generator and
the e4e encoder `sgsim world build` trained for it invert held-out renders (pictures the generator never made) by
each method of the photo policy: e4e alone, the default optimisation (1000 W + 300 W+ steps), e4e+optimise (300 W+
steps from the encoder's code) and the optimisation again AT EQUAL WALL TIME with e4e+optimise: its steps are that
photo's e4e+optimise seconds divided by the pace the default run just measured (after its fixed start-up cost),
split 1000:300 between W and W+ as the default's are; its own time is printed beside. The distance is pixel MSE /
PSNR (a world has no LPIPS weights; the optimisation's loss is the pixel pyramid that stands in for them), and the
world's judge reads colour, shape and position of each reconstruction against the render's truth.

    python scripts/bench_inversion.py --world shapes --images 16
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sgsim.identity import IrSeConfig  # noqa: E402
from sgsim.images import read_image  # noqa: E402
from sgsim.inversion import InversionProgress, invert, w_statistics  # noqa: E402
from sgsim.lpips import LpipsDistance  # noqa: E402
from sgsim.settings import INVERT_STEPS as DEFAULT_W_STEPS, REFINE_STEPS as DEFAULT_REFINE_STEPS  # noqa: E402
from sgsim.style_encoder import StyleEncoder, StyleEncoderConfig  # noqa: E402
from stylegan2 import Generator  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces" / "astronaut.jpg"
DEFAULT_RESOLUTION = 256  # the CPU measurement quoted in the README
QUICK_RESOLUTION = 32  # the tiny networks of the tests (channel_base 128 leaves no channels at 256 px)


def seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every parameter with seeded normal noise (positive LPIPS channel weights, as trained ones are)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
            if name.startswith("lpips"):
                parameter.abs_()
    return module.eval().requires_grad_(False)


def build(resolution: int, quick: bool, device: torch.device) -> tuple[Generator, LpipsDistance]:
    if quick:
        G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=resolution, img_channels=3,
                      mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16})
        lpips = LpipsDistance(channels=(4, 8, 8, 8, 8))
    else:
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                      mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
        lpips = LpipsDistance()
    return seeded(G, 1).to(device), seeded(lpips, 2).to(device)


def time_encoder(G: Generator, target: torch.Tensor, quick: bool) -> float:
    """Seconds of an e4e inversion (resize to the encoder's input, encode, render the code), best of two after a
    warm-up; the encoder is the FFHQ-size one (IR-SE50, 512-wide heads) with as many rows as G has."""
    backbone = IrSeConfig(stem_channels=8, stages=((8, 1), (12, 1), (16, 1), (24, 1)), se_reduction=4) if quick else IrSeConfig()
    config = StyleEncoderConfig(num_ws=G.num_ws, w_dim=G.w_dim, backbone=backbone, input_size=64 if quick else 256)
    encoder = seeded(StyleEncoder(config), 3).to(target.device)
    latent_avg = torch.zeros(G.num_ws, G.w_dim, device=target.device)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        with torch.no_grad():
            faces = torch.nn.functional.interpolate(target, size=(config.input_size,) * 2, mode="bilinear", antialias=True)
            G.synthesis(encoder.codes(faces, latent_avg), noise_mode="const")
        if target.is_cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return min(seconds[1:])


def time_alignment() -> Optional[tuple[float, float]]:
    """Seconds to load dlib's landmark model, and to detect and align one face; None without sgsim[faces]."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        return None
    from sgsim.alignment import read_face

    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test photo's face is small; the upscaling warning is expected
        for _ in range(2):  # the first call also loads the model
            started = time.perf_counter()
            read_face(PHOTO, 256)
            seconds.append(time.perf_counter() - started)
    return seconds[0] - seconds[1], seconds[1]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=None,
                        help="generator resolution (a power of two >= 8); default 256, with --quick 32")
    parser.add_argument("--w-steps", type=int, default=8, help="timed steps of the W fit")
    parser.add_argument("--refine-steps", type=int, default=8, help="timed steps of the W+ refinement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny networks (the test sizes)")
    parser.add_argument("--world", default=None, help="measure reconstruction in this built world (shapes) instead")
    parser.add_argument("--images", type=int, default=16, help="held-out renders inverted in --world mode")
    return parser.parse_args(argv)


def timed_run(G, target: torch.Tensor, plan) -> tuple[torch.Tensor, float, Optional[InversionProgress]]:
    """(reconstruction, wall seconds, the last step's progress) of one photo inverted by `plan` through the policy's
    own run_plan (an encoder's file is read on every call, as each `sgsim invert` reads it)."""
    from sgsim.photo_inversion import run_plan

    reports: list[InversionProgress] = []
    started = time.perf_counter()
    result = run_plan(G, target, plan, callback=reports.append)
    return result.image, time.perf_counter() - started, reports[-1] if reports else None


def bench_world(name: str, count: int, device: torch.device) -> None:
    """Invert `count` held-out renders of a world by each method and print reconstruction, judge and time per method."""
    from dataclasses import replace

    from sgsim.errors import SgsimNotice
    from sgsim.photo_inversion import E4E_OPTIMISE, OPTIMISE, plan_photo_inversion
    from sgsim.worlds import resolve_world
    from sgsim.worlds.metrics import held_out_photos, photo_reconstruction
    from stylegan2 import load_generator

    files = resolve_world(name)
    G = load_generator(files.generator, device=device).eval()
    photos, scene = held_out_photos(count)
    default = plan_photo_inversion(files.generator, metadata=G.metadata)
    plans = {"e4e": default, "e4e+optimise": plan_photo_inversion(files.generator, E4E_OPTIMISE, metadata=G.metadata),
             "optimise": plan_photo_inversion(files.generator, OPTIMISE, metadata=G.metadata)}
    print(f"{name} world, {count} held-out renders, {device}, {torch.get_num_threads()} threads; pixel loss and "
          f"distance (no LPIPS weights in a world)\ndefault {default.note()}")
    images: dict[str, list[torch.Tensor]] = {key: [] for key in (*plans, "optimise, equal time")}
    seconds: dict[str, list[float]] = {key: [] for key in images}
    budget = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SgsimNotice)  # the pixel loss standing in for LPIPS, said above
        for plan in (default, replace(plans["optimise"], steps=2, refine_steps=2)):  # warm-up, not timed
            timed_run(G, photos[:1].to(device), plan)
        for index in range(count):
            target = photos[index:index + 1].to(device)
            last = {}
            for key, plan in plans.items():
                image, took, last[key] = timed_run(G, target, plan)
                images[key].append(image.cpu())
                seconds[key].append(took)
            # The default optimisation's pace per step, and its start-up (w statistics, final render), just measured.
            pace = last["optimise"].elapsed_s / last["optimise"].step
            start_up = seconds["optimise"][-1] - last["optimise"].elapsed_s
            steps = max(2, int((seconds["e4e+optimise"][-1] - start_up) / pace))
            w_steps = max(1, round(steps * DEFAULT_W_STEPS / (DEFAULT_W_STEPS + DEFAULT_REFINE_STEPS)))
            budget.append(steps)
            image, took, _ = timed_run(G, target, replace(plans["optimise"], steps=w_steps, refine_steps=steps - w_steps))
            images["optimise, equal time"].append(image.cpu())
            seconds["optimise, equal time"].append(took)
    with torch.no_grad():
        mean = G.synthesis(G.mapping.w_avg.reshape(1, 1, -1).expand(count, G.num_ws, -1), noise_mode="const")
    rows = {key: photo_reconstruction(photos, scene, torch.cat(value)) for key, value in images.items()}
    rows["mean latent (no inversion)"] = photo_reconstruction(photos, scene, mean.cpu())
    print(f"optimise at equal time: {min(budget)}-{max(budget)} steps (W:W+ = {DEFAULT_W_STEPS}:{DEFAULT_REFINE_STEPS}), "
          f"from the default run's pace after its start-up")
    print(f"{'method':28} {'pixel MSE':>9} {'PSNR dB':>8} {'colour':>7} {'shape':>6} {'position':>8} {'s/photo':>8}")
    for key, row in rows.items():
        took = f"{sum(seconds[key]) / count:8.2f}" if key in seconds else f"{'-':>8}"
        print(f"{key:28} {row['pixel_mse']:9.4f} {row['psnr_db']:8.2f} {row['kept_colour']:7.0%} {row['kept_shape']:6.0%} "
              f"{row['kept_position']:8.0%} {took}")
    e4e_s = sum(seconds["e4e"]) / count
    print(f"e4e speed-up over the default optimisation: {sum(seconds['optimise']) / count / e4e_s:.0f}x")


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.world is not None:
        bench_world(args.world, args.images, torch.device(args.device))
        return
    if args.w_steps < 2 or args.refine_steps < 1:
        raise SystemExit("time at least 2 W steps and 1 W+ step")
    if args.resolution is None:
        args.resolution = QUICK_RESOLUTION if args.quick else DEFAULT_RESOLUTION
    device = torch.device(args.device)
    G, lpips = build(args.resolution, args.quick, device)
    target = read_image(PHOTO, args.resolution).to(device)
    print(f"{'tiny' if args.quick else 'config-f widths'} generator at {args.resolution} px, "
          f"{'tiny' if args.quick else 'full'} LPIPS-VGG16, {device}, {torch.get_num_threads()} threads")

    started = time.perf_counter()
    w_statistics(G)
    statistics_s = time.perf_counter() - started
    invert(G, target, steps=2, refine_steps=0, lpips=lpips)  # warm-up

    cpu_at: list[float] = []  # process CPU seconds (all threads) after each step: unlike wall time, not inflated by other jobs
    reports: list[InversionProgress] = []

    def record(progress: InversionProgress) -> None:
        reports.append(progress)
        cpu_at.append(time.process_time())

    invert(G, target, steps=args.w_steps, refine_steps=args.refine_steps, lpips=lpips, callback=record)
    w_end = reports[args.w_steps - 1].elapsed_s
    w_step = w_end / args.w_steps
    refine_step = (reports[-1].elapsed_s - w_end) / args.refine_steps
    w_cpu = (cpu_at[args.w_steps - 1] - cpu_at[0]) / (args.w_steps - 1)  # from the first report: the w statistics come before it
    refine_cpu = (cpu_at[-1] - cpu_at[args.w_steps - 1]) / args.refine_steps
    total = statistics_s + DEFAULT_W_STEPS * w_step + DEFAULT_REFINE_STEPS * refine_step

    print(f"w statistics (10000 mapped z): {statistics_s:.2f} s")
    print(f"W fit:         {w_step:.3f} s/step wall, {w_cpu:.3f} CPU s/step ({args.w_steps} steps)")
    print(f"W+ refinement: {refine_step:.3f} s/step wall, {refine_cpu:.3f} CPU s/step ({args.refine_steps} steps); "
          f"W+ / W = {refine_step / w_step:.2f} wall, {refine_cpu / w_cpu:.2f} CPU")
    print(f"default sgsim invert ({DEFAULT_W_STEPS} W + {DEFAULT_REFINE_STEPS} W+ steps): about {total / 60:.1f} min "
          f"(W fit alone {(statistics_s + DEFAULT_W_STEPS * w_step) / 60:.1f} min)")
    e4e_s = time_encoder(G, target, args.quick)
    print(f"e4e inversion (encode + render): {e4e_s:.2f} s; default optimisation / e4e = {total / e4e_s:.0f}x; "
          f"e4e+optimise ({DEFAULT_REFINE_STEPS} W+ steps) about {(e4e_s + DEFAULT_REFINE_STEPS * refine_step) / 60:.1f} min")
    alignment = time_alignment()
    if alignment is None:
        print("face alignment: not measured (pip install 'sgsim[faces]')")
    else:
        print(f"face alignment: {alignment[0]:.2f} s to load dlib's landmark model, {alignment[1]:.2f} s to detect and align")


if __name__ == "__main__":
    main()
