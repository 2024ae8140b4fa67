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
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
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
