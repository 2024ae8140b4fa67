"""Benchmark a sound-guided edit: (a) the published loop re-created, (b) sgsim at batch 1, (c) sgsim with many targets in one batch.

All networks are full size with seeded random weights built in-process (no downloads): the FFHQ config-f
generator, open_clip ViT-B/32, the sgsim-resnet18 audio encoder and ArcFace IR-SE50 for the identity term;
the targets are real sounds (by default the paper's eight demo sounds in tests/data/audio). (a) runs in a process
of its own, with the C library's malloc as the published code has it; on a CPU (a') is (a) with the heap kept as
sgsim's loops keep it (sgsim/host_memory.py). Prints seconds per edit, edits per minute, optimiser steps per
second, seconds per step once the loop runs, peak GPU memory, model FLOPs per step and the achieved fraction of
the device's peak, and the ratios of (b) and (c) to (a) and (a'): per timed edit, per step and for 300-step
edits. Warm-up edits are not timed; --repeats N interleaves N timings of each configuration and reports medians.

    python scripts/bench_edit.py --device cuda                  # the measurement of docs/reference.md#performance-targets (1024 px, 300 steps, 16 targets)
    python scripts/bench_edit.py --device cpu --quick           # tiny networks, a few steps: a smoke run, not a measurement
    python scripts/bench_edit.py --device cpu --memory --resolution 1024 --steps 2   # peak RSS of (a) and (b), one process each
    python scripts/bench_edit.py --device cpu --to-quality --resolution 256  # steps and seconds sgsim needs to reach (a)'s CLIP loss
    python scripts/bench_edit.py --device cpu --tolerance --resolution 256 --precision bf16  # bf16 renders and edits vs fp32
    python scripts/bench_edit.py --device cpu --vs-full --work-resolution 256 --steps 3 --repeats 2  # time vs the full-resolution path
    python scripts/bench_edit.py --device cpu --vs-full --tolerance --work-resolution 256 --steps 25  # its quality, by the same tolerance
    python scripts/bench_edit.py --device cpu --auto-steps --resolution 256   # steps auto vs 300 fixed steps: steps, time, scores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sgsim.editing.targets import Target, embed_target
from sgsim.schedule import ramped_lr

# The repository's own real sounds (sources and licence in that folder's SOURCES.md).
DEFAULT_AUDIO = Path(__file__).resolve().parents[1] / "tests" / "data" / "audio"

# Dense peak TFLOP/s (tensor-core fp16/bf16, and plain fp32) from NVIDIA's H100 / H200 datasheets (sparse
# figures halved), matched against torch.cuda.get_device_name() in this order.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"fp16": 756.0, "fp32": 51.0},
    "H100": {"fp16": 989.0, "fp32": 67.0},
    "H200": {"fp16": 989.0, "fp32": 67.0},
}

# The loss weights of both loops: SGSIM's FFHQ values (paper: lambda_sim 0.008, lambda_id 0.004).
LAMBDA_LATENT = 0.008
LAMBDA_ID = 0.004
LR = 0.1  # SGSIM README
DEFAULT_STEPS = 300  # the steps of an edit in the published loop and in sgsim
# Candidate flattening rules --auto-steps scores beside AUTO_RULE: window, min_improvement, min_steps.
AUTO_RULES = [(window, improvement, least) for window in (20, 40, 60, 80) for improvement in (0.0005, 0.002)
              for least in (60, 100, 150) if window < least]


@dataclass(frozen=True)
class Networks:
    """Everything an edit needs, on the benchmark device."""

    generator: nn.Module
    clip: nn.Module  # encoders ClipModel (fp32)
    audio_encoder: nn.Module
    arcface: nn.Module


@dataclass(frozen=True)
class Measurement:
    """One timed configuration."""

    key: str  # "a", "a'", "b" or "c": what the ratios call it
    name: str
    edits: int  # targets edited by the timed run
    steps: int  # optimiser steps of the timed run
    seconds: float  # wall time of the timed run, synchronised
    step_seconds: float  # one step once the loop runs: from the end of the timed run's first step to that of its last
    peak_mib: Optional[float]  # peak GPU memory allocated during the timed run; None on the CPU
    flops_per_step: float  # model FLOPs of one optimiser step of the whole batch (forward + backward), edits x batch 1
    dominant_precision: str  # 'fp32', 'fp16' or 'bf16': its peak is the one achieved FLOP/s is compared with


def build_networks(args: argparse.Namespace, device: torch.device) -> Networks:
    """Seeded random networks: full size, or tiny ones for --quick."""
    import open_clip

    from encoders.clip import ClipModel
    from encoders.registry import build_audio_encoder
    from sgsim.identity import ArcFace, IrSeConfig
    from stylegan2 import Generator

    torch.manual_seed(0)
    if args.quick:
        G = Generator(32, 0, 32, args.resolution, 3, mapping_kwargs={"num_layers": 2},
                      synthesis_kwargs={"channel_base": 256, "channel_max": 32})
        model = open_clip.CLIP(
            embed_dim=512, quick_gelu=True,
            vision_cfg={"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        )
        arcface = ArcFace(IrSeConfig(stem_channels=8, stages=((8, 1), (16, 1)), se_reduction=4, embedding_dim=32))
    else:
        # FFHQ config-f as converted by NVIDIA (docs/reference.md#stylegan2-generator): 8 mapping layers, channel_base 32768, max 512.
        G = Generator(512, 0, 512, args.resolution, 3, mapping_kwargs={"num_layers": 8},
                      synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
        arcface = ArcFace()
    networks = (G, ClipModel.from_open_clip(model), build_audio_encoder("sgsim-resnet18"), arcface)
    return Networks(*(net.to(device).eval().requires_grad_(False) for net in networks))


def published_clip_input(resolution: int, image_size: int) -> nn.Module:
    """SGSIM / StyleCLIP's CLIP input: nearest x7 up-sampling, then average pooling down to CLIP's size (1024 px: by 32).
    No clamp, no [-1, 1] -> [0, 1] and no CLIP normalisation (docs/reference.md#published-clip-input)."""
    return nn.Sequential(nn.Upsample(scale_factor=7, mode="nearest"), nn.AvgPool2d(kernel_size=resolution * 7 // image_size))


def published_edit(
    generator: nn.Module,
    encode_image: Callable[[torch.Tensor], torch.Tensor],  # generator images -> CLIP image features (any dtype)
    arcface: Optional[nn.Module],  # identity network; None = no identity term
    w_source: torch.Tensor,  # [1, num_ws, w_dim]
    target: torch.Tensor,  # [1, embed_dim] sound embedding
    steps: int,
    lr: float = LR,
    lambda_latent: float = LAMBDA_LATENT,
    lambda_id: float = LAMBDA_ID,
    on_step: Optional[Callable[[], None]] = None,  # called after every step, once its loss is on the host
) -> tuple[torch.Tensor, list[float]]:
    """The published edit loop, re-created from docs/reference.md#edit-loss: Adam on W+ with the ramped lr, loss
    (1 - cos(CLIP(G(w)), target)) + lambda_latent ||w - w_src||^2 + lambda_id (1 - cos(ArcFace(G(w_src)), ArcFace(G(w)))),
    the identity arguments swapped as published, so that term is computed every step but sends no gradient.
    Returns the final image's latent and the per-step total losses."""
    w = w_source.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=lr)
    with torch.no_grad():
        source_image = generator.synthesis(w_source, noise_mode="const", force_fp32=True)
    totals = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = ramped_lr(step, steps, lr)
        image = generator.synthesis(w, noise_mode="const", force_fp32=True)
        clip_loss = 1 - F.cosine_similarity(encode_image(image).float(), target)
        latent_loss = (w_source - w).square().sum()
        loss = clip_loss + lambda_latent * latent_loss
        if arcface is not None:
            id_loss = 1 - (arcface.embed(source_image) * arcface.embed(image).detach()).sum(dim=1)
            loss = loss + lambda_id * id_loss
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        totals.append(float(loss.detach().sum()))
        if on_step is not None:
            on_step()
    return w.detach(), totals


@contextmanager
def reference_ops() -> Iterator[None]:
    """The generator's pure-PyTorch ops instead of its CUDA kernels (SGSIM_CUDA_OPS is read on every call)."""
    previous = os.environ.get("SGSIM_CUDA_OPS")
    os.environ["SGSIM_CUDA_OPS"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SGSIM_CUDA_OPS"]
        else:
            os.environ["SGSIM_CUDA_OPS"] = previous


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(run: Callable[[int], None]) -> float:
    """Model FLOPs of one optimiser step: those of a 2-step run minus those of a 1-step run (setup and render cancel).

    Count at batch 1: torch's FlopCounterMode counts the backward of a grouped convolution (the batched
    modulated convolution) as if every group saw the whole input, N times too many for N images.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            run(steps)
        counts.append(counter.get_total_flops())
    return float(counts[1] - counts[0])


# A configuration's edit: run(steps, ticks) edits with `steps` steps and appends time.perf_counter() to `ticks`
# (if given) after every step, once the step's loss is on the host.
EditRun = Callable[..., None]


def measure(key: str, name: str, run: EditRun, run_one: EditRun, edits: int, args: argparse.Namespace,
            device: torch.device, dominant_precision: str, count_flops: bool = True) -> Measurement:
    """Warm up, then time one full edit of `args.steps` steps; FLOPs are counted on short runs of one target (`run_one`).
    Without `count_flops` (a memory run) neither the warm-up nor the count runs."""
    if count_flops:
        run(args.warmup)
    sync(device)
    ticks: list[float] = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(args.steps, ticks)
        end.record()
        sync(device)
        seconds = start.elapsed_time(end) / 1000
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        started = time.perf_counter()
        run(args.steps, ticks)
        seconds, peak = time.perf_counter() - started, None
    flops = step_flops(run_one) * edits if count_flops else float("nan")
    step_seconds = (ticks[-1] - ticks[0]) / (len(ticks) - 1) if len(ticks) > 1 else seconds / args.steps
    return Measurement(key, name, edits, args.steps, seconds, step_seconds, peak, flops, dominant_precision)


def measure_published(nets: Networks, sound: Path, args: argparse.Namespace, device: torch.device,
                      count_flops: bool = True, key: str = "a") -> Measurement:
    """(a): pure-PyTorch ops, fp32 generator, CLIP in fp16 on CUDA (as OpenAI's loader sets it), batch 1.
    key "a'": the same in a process whose malloc keeps freed memory as sgsim's edit loop has it (sgsim.host_memory)."""
    import copy

    from sgsim.editing.sources import seed_latent

    nets.clip.cpu()  # the published run holds one CLIP on the device: its own fp16 copy
    clip_model = copy.deepcopy(nets.clip.model).to(device)
    if device.type == "cuda":
        clip_model = clip_model.half()
    clip_dtype = next(clip_model.parameters()).dtype
    to_clip = published_clip_input(nets.generator.img_resolution, nets.clip.image_size)

    def encode_image(images: torch.Tensor) -> torch.Tensor:
        return clip_model.encode_image(to_clip(images).to(clip_dtype))

    def run(steps: int, ticks: Optional[list[float]] = None) -> None:
        on_step = (lambda: ticks.append(time.perf_counter())) if ticks is not None else None
        with reference_ops():
            target = embed_target(Target(sound), nets.audio_encoder, nets.clip).sound[None].to(device)
            w_source = seed_latent(nets.generator, 0)[None]
            latent, _ = published_edit(nets.generator, encode_image, nets.arcface, w_source, target, steps, on_step=on_step)
            with torch.no_grad():
                nets.generator.synthesis(latent, noise_mode="const", force_fp32=True).cpu()

    try:
        name = "(a) published loop, batch 1" if key == "a" else "(a') published loop, heap kept"
        return measure(key, name, run, run, 1, args, device, "fp32", count_flops)
    finally:  # the fp16 copy goes with this frame; measure() empties the cache before the next configuration
        nets.clip.to(device)


def measure_sgsim(nets: Networks, sounds: list[Path], args: argparse.Namespace, device: torch.device, key: str, name: str,
                  count_flops: bool = True, work_resolution: Optional[str] = None) -> Measurement:
    """(b) / (c): sgsim's Editor at `args.precision` (default: the device's) and `work_resolution` (default
    args.work_resolution), all targets in one batch."""
    from sgsim.devices import choose_precision
    from sgsim.editing import Editor
    from sgsim.identity import IdentityLoss
    from stylegan2.precision import MIXED, SynthesisPrecision

    precision = choose_precision(args.precision, device).name
    mixed = SynthesisPrecision(num_fp16_res=args.fp16_res, conv_clamp=MIXED.conv_clamp, channels_last=args.channels_last,
                               fused_modconv=False if args.unfused_modconv else None)
    editor = Editor(nets.generator, nets.audio_encoder, clip=nets.clip, identity=IdentityLoss(nets.arcface), device=device,
                    preset="ffhq", mixed_synthesis=mixed)
    targets = [Target(sound) for sound in sounds]

    def run(steps: int, ticks: Optional[list[float]] = None, batch: list[Target] = targets) -> None:
        callback = (lambda step, losses: ticks.append(time.perf_counter())) if ticks is not None else None
        editor.edit(0, batch, steps=steps, lr=LR, lambda_latent=LAMBDA_LATENT, lambda_id=LAMBDA_ID, precision=precision,
                    callback=callback, work_resolution=work_resolution or args.work_resolution)

    def run_one(steps: int, ticks: Optional[list[float]] = None) -> None:
        run(steps, ticks, targets[:1])

    return measure(key, f"{name}, {precision}, batch {len(targets)}", run, run_one, len(targets), args, device,
                   {"mixed": "fp16"}.get(precision, precision), count_flops)


def device_peaks(device: torch.device, cpu_peak_gflops: Optional[float] = None) -> Optional[dict[str, float]]:
    """Peak TFLOP/s of this device: the PEAK_TFLOPS entry of a GPU; on a CPU the fp32 peak given on the command
    line, doubled for bf16 where the CPU computes it natively (AVX512-BF16's dot products do two FMAs per lane);
    None when unknown."""
    if device.type != "cuda":
        from sgsim.devices import native_bf16

        if cpu_peak_gflops is None:
            return None
        return {"fp32": cpu_peak_gflops / 1e3, "fp16": cpu_peak_gflops / 1e3 * (2 if native_bf16() else 1)}
    name = torch.cuda.get_device_name(device)
    return next((peaks for key, peaks in PEAK_TFLOPS.items() if key in name), None)


def default_edit_seconds(m: Measurement) -> float:
    """A DEFAULT_STEPS-step edit's seconds, from a shorter timed one: its fixed part (everything but the steps at
    the loop's pace: embedding, renders, the first step's extra) plus DEFAULT_STEPS steps at that pace."""
    return m.seconds + (DEFAULT_STEPS - m.steps) * m.step_seconds


def report(results: list[Measurement], peaks: Optional[dict[str, float]]) -> str:
    """The results table and the ratios against the first (published) row."""
    header = (f"{'configuration':38s} {'s/edit':>9s} {'edits/min':>10s} {'steps/s':>8s} {'s/step':>7s} {'peak MiB':>9s} {'MiB/edit':>9s} "
              f"{'GFLOP/step/edit':>16s} {'TFLOP/s':>8s} {'% peak':>7s}")
    lines = [header, "-" * len(header)]
    for m in results:
        achieved = m.flops_per_step * m.steps / m.seconds / 1e12
        peak = f"{100 * achieved / peaks['fp32' if m.dominant_precision == 'fp32' else 'fp16']:6.1f}%" if peaks else "    n/a"
        memory = (f"{m.peak_mib:9.0f} {m.peak_mib / m.edits:9.0f}" if m.peak_mib is not None else f"{'n/a':>9s} {'n/a':>9s}")
        lines.append(
            f"{m.name:38s} {m.seconds / m.edits:9.3f} {60 * m.edits / m.seconds:10.2f} {m.steps / m.seconds:8.2f} {m.step_seconds:7.3f} {memory} "
            f"{m.flops_per_step / m.edits / 1e9:16.1f} {achieved:8.3f} {peak} ({m.dominant_precision})"
        )
    baselines = [m for m in results if m.key in ("a", "a'")]
    for baseline in baselines:
        for m in results:
            if m.key in ("b", "c"):
                speed = (m.edits / m.seconds) / (baseline.edits / baseline.seconds)
                per_step = (m.edits / m.step_seconds) / (baseline.edits / baseline.step_seconds)
                full = (m.edits / default_edit_seconds(m)) / (baseline.edits / default_edit_seconds(baseline))
                memory = f"{(m.peak_mib / m.edits) / baseline.peak_mib:.2f}x" if m.peak_mib is not None else "n/a"
                lines.append(f"{m.key}/{baseline.key}: {speed:.2f}x the edits per minute ({m.steps}-step edits), {per_step:.2f}x per step, "
                             f"{full:.2f}x for {DEFAULT_STEPS}-step edits; {memory} the peak memory per edit")
    return "\n".join(lines)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_only(nets: Networks, sounds: list[Path], args: argparse.Namespace, device: torch.device) -> None:
    """One configuration, one edit of args.steps steps, no warm-up and no FLOP count: what --memory runs per process."""
    setup = peak_rss_mib()
    if args.only == "a":
        measure_published(nets, sounds[0], args, device, count_flops=False)
    else:
        measure_sgsim(nets, sounds[:1], args, device, "b", "(b) sgsim", count_flops=False)
    print(f"peak RSS MiB: setup {setup:.0f}, edit {peak_rss_mib():.0f}")


def measure_in_child(key: str, argv: list[str]) -> Measurement:
    """(a) or (a') timed in a fresh process: (a) runs with the C library's malloc as the published code has it,
    which this process no longer does once sgsim's edit loop has run here (sgsim.host_memory)."""
    run = subprocess.run([sys.executable, __file__, *argv, "--child", key], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"measuring ({key}) in its own process failed:\n{run.stderr}")
    return Measurement(**json.loads(run.stdout.strip().splitlines()[-1]))


def measure_memory(args: argparse.Namespace, argv: list[str]) -> None:
    """Peak RSS of (a) and of (b) at fp32 and at the device's default precision, each in a fresh process."""
    from sgsim.devices import choose_precision

    default = choose_precision(None, args.device).name
    configurations = [("(a) published loop", ["--only", "a"]), ("(b) sgsim fp32", ["--only", "b", "--precision", "fp32"])]
    if default != "fp32":
        configurations.append((f"(b) sgsim {default} (default)", ["--only", "b", "--precision", default]))
    forwarded = [a for a in argv if a not in ("--memory",)]
    peaks = []
    for name, extra in configurations:
        output = subprocess.run([sys.executable, __file__, *forwarded, *extra], check=True, capture_output=True, text=True).stdout
        setup, edit = (float(v.rstrip(",")) for v in output.strip().splitlines()[-1].split()[4::2])
        peaks.append(edit)
        print(f"{name:32s} peak RSS {edit:8.0f} MiB (networks built: {setup:.0f} MiB)  {edit / peaks[0]:.2f}x (a)", flush=True)


@torch.no_grad()
def edit_terms(nets: Networks, w_source: torch.Tensor, latents: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """One yardstick for every loop's result, on fp32 renders: sgsim's CLIP loss (images clamped and normalised as
    CLIP expects), the identity distance to the source image and the squared W+ distance to the source latent."""
    render = lambda w: nets.generator.synthesis(w, noise_mode="const", force_fp32=True)  # noqa: E731
    images, source = render(latents), render(w_source)
    clip = 1 - F.cosine_similarity(nets.clip.encode_image(images).float(), target).item()
    identity = 1 - F.cosine_similarity(nets.arcface.embed(images), nets.arcface.embed(source)).item()
    return {"clip": clip, "id": identity, "latent": (latents - w_source).square().sum().item()}


def measure_to_quality(nets: Networks, sound: Path, args: argparse.Namespace, device: torch.device) -> None:
    """The CLIP loss (a) reaches after args.steps steps, and the steps and seconds sgsim needs to reach it: the
    first step of a run as long as (a) whose loss is no higher, and the end of shorter runs (the ramped lr
    schedule scales with the number of steps), each with its identity and latent terms."""
    from sgsim.devices import choose_precision
    from sgsim.editing import Editor
    from sgsim.editing.sources import seed_latent
    from sgsim.identity import IdentityLoss

    target = embed_target(Target(sound), nets.audio_encoder, nets.clip).sound[None].to(device)
    w_source = seed_latent(nets.generator, 0)[None]
    clip_model = nets.clip.model
    to_clip = published_clip_input(nets.generator.img_resolution, nets.clip.image_size)
    with reference_ops():
        started = time.perf_counter()
        latent, _ = published_edit(nets.generator, lambda images: clip_model.encode_image(to_clip(images)), nets.arcface,
                                   w_source, target, args.steps)
        seconds = time.perf_counter() - started
    goal = edit_terms(nets, w_source, latent, target)
    print(f"{'loop':34s} {'steps':>5s} {'seconds':>8s} {'clip':>7s} {'id':>7s} {'latent':>7s}  reaches (a)'s clip loss")
    print(f"{'(a) published loop, fp32':34s} {args.steps:5d} {seconds:8.1f} {goal['clip']:7.4f} {goal['id']:7.4f} {goal['latent']:7.3f}", flush=True)
    precision = choose_precision(args.precision, device).name
    editor = Editor(nets.generator, nets.audio_encoder, clip=nets.clip, identity=IdentityLoss(nets.arcface), device=device, preset="ffhq")
    for steps in sorted({args.steps, *args.quality_steps}, reverse=True):
        started = time.perf_counter()
        result = editor.edit(0, Target(sound), steps=steps, lr=LR, lambda_latent=LAMBDA_LATENT, lambda_id=LAMBDA_ID, precision=precision)
        seconds = time.perf_counter() - started
        terms = edit_terms(nets, w_source, result.edited_latents.to(device), target)
        reached = [step for step, loss in enumerate(result.losses["clip"][:, 0]) if loss <= goal["clip"]]
        when = f"at step {reached[0] + 1} ({seconds * (reached[0] + 1) / steps:.1f} s)" if reached else "no"
        print(f"{'(b) sgsim, ' + precision:34s} {steps:5d} {seconds:8.1f} {terms['clip']:7.4f} {terms['id']:7.4f} "
              f"{terms['latent']:7.3f}  {when}", flush=True)


def measure_tolerance(nets: Networks, sound: Path, args: argparse.Namespace, device: torch.device) -> None:
    """The documented tolerance of sgsim's reduced precision (sgsim/editing/precision.py) on these networks: the
    renders of the same latents, and whole edits of args.steps steps at that precision, in fp32, and in fp32
    toward the target moved by 1 % (how far rounding-sized changes carry an edit), each scored on fp32 renders.
    With --vs-full the same test holds an edit at --work-resolution against the full-resolution edit at the same
    precision (and the full one toward the moved target), scored on full-size fp32 renders."""
    from sgsim.devices import choose_precision
    from sgsim.editing.optimise import choose_work_resolution, optimise_latents
    from sgsim.editing.precision import (EDIT_MARGIN_DB, EDIT_MAX_CLIP_LOSS_DIFF, RENDER_MIN_PSNR_DB, edit_precision,
                                         image_psnr as psnr, nudge_targets)
    from sgsim.editing.sources import seed_latent
    from sgsim.identity import IdentityLoss

    precision = choose_precision(args.precision, device).name
    G = nets.generator
    working = choose_work_resolution(args.work_resolution, G, device) if args.vs_full else None
    target = embed_target(Target(sound), nets.audio_encoder, nets.clip).sound[None].to(device)
    source = seed_latent(G, 0)[None]
    if working is None:
        ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(7)).to(device), None, truncation_psi=0.7)
        with torch.no_grad():
            renders = {}
            for name in ("fp32", precision):
                with edit_precision(name, G, nets.clip):
                    renders[name] = G.synthesis(ws, noise_mode="const")
        render_db = psnr(renders[precision], renders["fp32"])
        print(f"renders, {precision} vs fp32: {render_db:.1f} dB (bound {RENDER_MIN_PSNR_DB:.0f} dB)", flush=True)
        candidate, reference = (precision, precision, None, target), ("fp32", "fp32", None, target)
        floor = ("fp32, target moved 1 %", "fp32", None, nudge_targets(target, seed=8))
    else:
        print(f"{G.img_resolution} px generator, {precision}; work resolution {working.used or 'full'} ({working.reason})", flush=True)
        candidate = (f"{precision} at {working.used or G.img_resolution} px", precision, working.used, target)
        reference = (f"{precision} at full size", precision, None, target)
        floor = (f"{precision} at full size, target moved 1 %", precision, None, nudge_targets(target, seed=8))

    weights, helpers = {"clip": 1.0, "latent": LAMBDA_LATENT, "id": LAMBDA_ID}, {"identity": IdentityLoss(nets.arcface)}
    edits, terms = {}, {}
    for name, run_precision, work_resolution, aim in (candidate, reference, floor):
        ticks: list[float] = []
        started = time.perf_counter()
        with edit_precision(run_precision, G, nets.clip, helpers=helpers.values()) as clip:
            out = optimise_latents(G, clip, source, aim, steps=args.steps, lr=LR, weights=weights, networks=helpers,
                                   work_resolution=work_resolution, callback=lambda step, losses: ticks.append(time.perf_counter()))
        seconds = time.perf_counter() - started
        with torch.no_grad(), edit_precision("fp32", G, nets.clip):
            edits[name] = G.synthesis(out.latents, noise_mode="const")
        terms[name] = edit_terms(nets, source, out.latents, target)
        pace = (ticks[-1] - ticks[0]) / (len(ticks) - 1) if len(ticks) > 1 else seconds / args.steps
        print(f"{name:40s} {seconds:7.1f} s ({pace:.3f} s/step)  full-size clip {terms[name]['clip']:.4f}  "
              f"id {terms[name]['id']:.4f}  latent {terms[name]['latent']:.3f}", flush=True)
    (got, _, _, _), (ref, _, _, _), (moved, _, _, _) = candidate, reference, floor
    achieved, margin = psnr(edits[got], edits[ref]), psnr(edits[moved], edits[ref])
    clip_diff = abs(terms[got]["clip"] - terms[ref]["clip"])
    within = achieved >= min(RENDER_MIN_PSNR_DB, margin - EDIT_MARGIN_DB) and clip_diff < EDIT_MAX_CLIP_LOSS_DIFF
    print(f"edits, {got} vs {ref}: {achieved:.1f} dB; {moved} vs {ref}: {margin:.1f} dB; final CLIP "
          f"losses {clip_diff:.4f} apart (bound {EDIT_MAX_CLIP_LOSS_DIFF}): {'within' if within else 'OUTSIDE'} the tolerance")
    # A working resolution is another path, not rounding: its images may differ as other edits do, so what it must
    # keep are the scores. Each of the full-size CLIP loss, identity distance and latent distance may be worse than the
    # full edit's by at most the documented CLIP bound (1 % of the latent distance) or what the 1 % moved target changes.
    allowed = {"clip": EDIT_MAX_CLIP_LOSS_DIFF, "id": EDIT_MAX_CLIP_LOSS_DIFF, "latent": 0.01 * terms[ref]["latent"]}
    worse = {key: terms[got][key] - terms[ref][key] for key in allowed}
    kept = all(worse[key] <= max(allowed[key], abs(terms[moved][key] - terms[ref][key])) for key in allowed)
    print(f"scores of {got} minus those of {ref}: " + "; ".join(
        f"{key} {worse[key]:+.4f} (the moved target's {terms[moved][key] - terms[ref][key]:+.4f}, bound {allowed[key]:.4f})"
        for key in allowed) + f": {'kept' if kept else 'NOT kept'}")


def measure_auto_steps(nets: Networks, sound: Path, args: argparse.Namespace, device: torch.device) -> None:
    """steps="auto" against the fixed args.steps (the default 300, auto's cap) on the same sound and seed, from one
    fixed run: auto runs the same steps under the same learning-rate ramp until its rule stops it (a test holds an
    auto edit to the fixed run's latents at that step), so its latents are the fixed run's after that step and its
    time the fixed run's clock there; a rule with a cooldown (AUTO_RULE's, and each of args.cooldowns) leaves the fixed
    run's steps once a row flattens, so it gets a run of its own. Prints the steps auto runs, both times and full-size
    scores (edit_terms) by the bounds --vs-full --tolerance holds a working resolution to, and where other flattening
    rules would stop with what they keep (how AUTO_RULE's constants were chosen)."""
    from dataclasses import replace

    from sgsim.devices import choose_precision
    from sgsim.editing import Editor
    from sgsim.editing.optimise import choose_work_resolution
    from sgsim.editing.precision import EDIT_MAX_CLIP_LOSS_DIFF
    from sgsim.editing.sources import seed_latent
    from sgsim.editing.stopping import AUTO_RULE, FlatteningRule
    from sgsim.identity import IdentityLoss

    precision = choose_precision(args.precision, device).name
    editor = Editor(nets.generator, nets.audio_encoder, clip=nets.clip, identity=IdentityLoss(nets.arcface), device=device, preset="ffhq")
    target = embed_target(Target(sound), nets.audio_encoder, nets.clip).sound[None].to(device)
    w_source = seed_latent(nets.generator, args.seed)[None]
    snapshots: list[torch.Tensor] = []  # the latents each step rendered: snapshots[n] is the result after n steps
    ticks: list[float] = []

    def keep(step: int, losses: dict, latents: torch.Tensor) -> None:
        ticks.append(time.perf_counter())
        snapshots.append(latents.cpu())

    run = editor.prepare_run(precision, None, LAMBDA_LATENT, LAMBDA_ID)
    working = choose_work_resolution(args.work_resolution, nets.generator, device)

    def optimise(steps: int, **loop):
        """The edit loop on this sound and seed (what Editor.edit runs), every run with the same inputs."""
        return editor.optimise(run, w_source, target, steps=steps, lr=LR, work_resolution=working.used, **loop)

    started = time.perf_counter()
    fixed = optimise(args.steps, callback=keep, callback_values=("latents",))
    history = fixed.losses["total"]
    snapshots.append(fixed.latents)
    allowed = ("clip", "id", "latent")
    scored: dict[int, dict[str, float]] = {}

    def score(steps: int) -> dict[str, float]:
        if steps not in scored:
            scored[steps] = edit_terms(nets, w_source, snapshots[steps].to(device), target)
        return scored[steps]

    def row(name: str, steps: int, at: Optional[int] = None) -> str:
        terms = score(steps if at is None else at)
        return (f"{name:36s} {steps:5d} {ticks[steps - 1] - started:8.1f} s  full-size clip {terms['clip']:.4f}  "
                f"id {terms['id']:.4f}  latent {terms['latent']:.3f}")

    cap = len(history)

    def auto_result(rule) -> tuple[int, int]:
        """(steps run, snapshot its result is) of an auto run under `rule`: its lowest-loss step, or the cap's end."""
        stop = rule.stop_steps(history)[0]
        return (stop, int(np.argmin(history[:stop, 0]))) if stop else (cap, cap)

    def cooled_run(rule) -> tuple[int, float, dict[str, float]]:
        """(steps, seconds, full-size scores) of an auto edit under a rule with a cooldown: its own run, since after a
        row flattens its steps are no longer the fixed run's."""
        began = time.perf_counter()
        out = optimise(rule.max_steps, stop=rule, callback=lambda step, losses: None)
        return out.steps_used[0], time.perf_counter() - began, edit_terms(nets, w_source, out.latents.to(device), target)

    print(f"{nets.generator.img_resolution} px generator, {precision}, {torch.get_num_threads()} thread(s); one run of {cap} steps"
          + ("" if cap == AUTO_RULE.max_steps else f" (auto's own run has {AUTO_RULE.max_steps}: its ramp differs, a smoke run)"))
    print(row(f"fixed {cap} steps", cap), flush=True)
    fixed_terms, fixed_seconds = score(cap), ticks[cap - 1] - started
    bounds = {"clip": EDIT_MAX_CLIP_LOSS_DIFF, "id": EDIT_MAX_CLIP_LOSS_DIFF, "latent": 0.01 * fixed_terms["latent"]}

    def versus(name: str, used: int, seconds: float, terms: dict[str, float]) -> None:
        worse = {key: terms[key] - fixed_terms[key] for key in allowed}
        kept = all(worse[key] <= bounds[key] for key in allowed)
        print(f"{name} / fixed {cap}: {used} steps, {seconds:.1f} s, {fixed_seconds / seconds:.2f}x faster; scores minus "
              "fixed: " + "; ".join(f"{key} {worse[key]:+.4f} (bound {bounds[key]:.4f})" for key in allowed)
              + f": {'kept' if kept else 'NOT kept'}; {cap / used:.2f}x fewer steps", flush=True)

    def variant(**change) -> FlatteningRule:
        """AUTO_RULE with `change`, capped at the fixed run's steps, or at its min_steps when a smoke run's cap is shorter."""
        rule = replace(AUTO_RULE, **change)
        return replace(rule, max_steps=max(cap, rule.min_steps))

    auto_rule = variant()
    if auto_rule.cooldown:
        versus("auto (AUTO_RULE)", *cooled_run(auto_rule))
    else:
        used, kept_at = auto_result(auto_rule)
        print(row(f"auto (AUTO_RULE; step {kept_at} kept)", used, kept_at), flush=True)
        versus("auto (AUTO_RULE)", used, ticks[used - 1] - started, score(kept_at))
    for cooldown in args.cooldowns:
        versus(f"auto with a {cooldown}-step cooldown", *cooled_run(variant(cooldown=cooldown)))
    for least in args.min_steps:
        versus(f"auto flattening from step {least}", *cooled_run(variant(min_steps=least)))
    print(f"\nother rules without a cooldown on the same history (AUTO_RULE: window {AUTO_RULE.window}, min_improvement "
          f"{AUTO_RULE.min_improvement}, min_steps {AUTO_RULE.min_steps}); scores minus the fixed run's, of the latents "
          f"auto keeps (its lowest-loss step) and of the stop step's own:")
    print(f"{'window':>6s} {'improve':>8s} {'min':>4s} {'stops':>5s} {'kept':>5s} {'clip':>8s} {'id':>8s} {'latent':>8s}"
          f"   {'clip@stop':>9s} {'id@stop':>8s} {'lat@stop':>8s}")
    for window, improvement, least in AUTO_RULES:
        rule = variant(window=window, min_improvement=improvement, min_steps=least, cooldown=0)
        stop, best = auto_result(rule)
        delta = {at: {key: score(at)[key] - fixed_terms[key] for key in allowed} for at in (best, stop)}
        print(f"{window:6d} {improvement:8.4f} {least:4d} {stop:5d} {best:5d} " + " ".join(f"{delta[best][key]:+8.4f}" for key in allowed)
              + "   " + " ".join(f"{delta[stop][key]:+8.4f}" for key in allowed), flush=True)


def measure_vs_full(nets: Networks, sounds: list[Path], args: argparse.Namespace, device: torch.device) -> None:
    """(b) at --work-resolution against (b) at full resolution, the default path before working resolutions, on the
    same sound and seed, timed --repeats times interleaved; ratios per timed edit, per step and for 300-step edits."""
    rounds = []
    for round_ in range(args.repeats):
        measured = [measure_sgsim(nets, sounds[:1], args, device, "a", "(b) sgsim at full size", work_resolution="full"),
                    measure_sgsim(nets, sounds[:1], args, device, "b", f"(b) sgsim, work resolution {args.work_resolution}")]
        print(f"round {round_ + 1}: " + ", ".join(f"{m.name} {m.seconds:.2f} s ({m.step_seconds:.3f} s/step)" for m in measured), flush=True)
        rounds.append(measured)
    full, working = (dataclasses.replace(row[0], seconds=statistics.median(m.seconds for m in row),
                                         step_seconds=statistics.median(m.step_seconds for m in row)) for row in zip(*rounds))
    for m in (full, working):
        print(f"{m.name:48s} {m.seconds:8.2f} s/edit ({m.steps} steps)  {m.step_seconds:7.3f} s/step  "
              f"{default_edit_seconds(m):8.1f} s for {DEFAULT_STEPS} steps  {m.flops_per_step / 1e9:7.1f} GFLOP/step")
    print(f"work resolution / full: {full.seconds / working.seconds:.2f}x per timed edit, {full.step_seconds / working.step_seconds:.2f}x "
          f"per step, {default_edit_seconds(full) / default_edit_seconds(working):.2f}x for {DEFAULT_STEPS}-step edits")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--resolution", type=int, default=None, help="generator resolution (default 1024; --quick: 32)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per edit (default 300; --quick: 3)")
    parser.add_argument("--batch", type=int, default=None, help="targets edited in one batch in (c) (default 16; --quick: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="steps of the untimed warm-up edit of each configuration")
    parser.add_argument("--repeats", type=int, default=1, help="time every configuration this many times, interleaved; report the medians")
    parser.add_argument("--precision", choices=["fp32", "mixed", "bf16"], default=None, help="sgsim's precision (default: the device's)")
    parser.add_argument("--fp16-res", type=int, default=4, help="mixed: fp16 for this many highest resolutions (NVIDIA: 4)")
    parser.add_argument("--channels-last", action="store_true", help="mixed: channels_last activations in the fp16 blocks")
    parser.add_argument("--unfused-modconv", action="store_true",
                        help="mixed: modulated convolutions by scaling activations (no weight-gradient convolution), as on the CPU")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile sgsim's synthesis network (with SGSIM_CUDA_OPS=0 its reference ops get fused)")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="folder of .wav targets (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="tiny networks and a few steps: a smoke run that finishes in seconds")
    parser.add_argument("--cpu-peak-gflops", type=float, default=None,
                        help="the CPU's fp32 peak (cores x GHz x FLOP/cycle) for the %% of peak column; bf16 counts double where native")
    parser.add_argument("--memory", action="store_true", help="peak RSS of (a) and (b), each configuration in its own process")
    parser.add_argument("--to-quality", action="store_true", help="steps and seconds sgsim needs to reach the published loop's CLIP loss")
    parser.add_argument("--quality-steps", type=int, nargs="*", default=[150, 75], help="--to-quality: shorter sgsim runs to try")
    parser.add_argument("--tolerance", action="store_true",
                        help="--precision's renders and whole edits against fp32's, by the documented tolerance")
    parser.add_argument("--work-resolution", default="auto", help="sgsim's working resolution: auto, full or N px (default: auto)")
    parser.add_argument("--vs-full", action="store_true",
                        help="(b) at --work-resolution against (b) at full resolution: timed (--repeats), or with --tolerance by the documented tolerance")
    parser.add_argument("--auto-steps", action="store_true",
                        help="steps auto against --steps fixed steps (default 300), from one fixed run: steps, time, full-size scores")
    parser.add_argument("--cooldowns", type=int, nargs="*", default=[],
                        help="--auto-steps: also auto runs with these cooldowns (steps cooling a flattened edit's learning rate)")
    parser.add_argument("--min-steps", type=int, nargs="*", default=[],
                        help="--auto-steps: also auto runs that may flatten no earlier than these steps (AUTO_RULE's cooldown)")
    parser.add_argument("--seed", type=int, default=0, help="--auto-steps: the generator seed whose image is edited")
    parser.add_argument("--only", choices=["a", "b"], default=None, help=argparse.SUPPRESS)  # one process of --memory
    parser.add_argument("--child", choices=["a", "a'"], default=None, help=argparse.SUPPRESS)  # (a) or (a') timed in its own process
    args = parser.parse_args(argv)
    args.resolution = args.resolution or (32 if args.quick else 1024)
    args.steps = args.steps or (3 if args.quick else 300)
    args.batch = args.batch or (2 if args.quick else 16)
    if min(args.steps, args.batch, args.warmup, args.repeats) < 1:
        parser.error("--steps, --batch, --warmup and --repeats must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.memory:
        measure_memory(args, list(sys.argv[1:] if argv is None else argv))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sounds = sorted(args.audio.glob("*.wav"))
    if not sounds:
        sys.exit(f"no .wav files in {args.audio}; pass --audio FOLDER")
    batch_sounds = [sounds[i % len(sounds)] for i in range(args.batch)]

    nets = build_networks(args, device)
    if args.only:
        run_only(nets, sounds, args, device)
        return
    if args.child:
        from contextlib import nullcontext

        from sgsim.host_memory import generator_memory_kept

        # (a'): the heap as sgsim's loop keeps it for the same activations (fp32, batch 1), where it keeps it.
        with generator_memory_kept(nets.generator, device, 1) if args.child == "a'" else nullcontext():
            print(json.dumps(dataclasses.asdict(measure_published(nets, sounds[0], args, device, key=args.child))))
        return
    if args.to_quality:
        measure_to_quality(nets, sounds[0], args, device)
        return
    if args.auto_steps:
        measure_auto_steps(nets, sounds[0], args, device)
        return
    if args.tolerance:
        measure_tolerance(nets, sounds[0], args, device)
        return
    if args.vs_full:
        measure_vs_full(nets, sounds, args, device)
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.resolution} px, {args.steps} steps, batch {args.batch}; "
          f"mixed = fp16 in {args.fp16_res} resolutions{', channels_last' if args.channels_last else ''}"
          f"{', unfused modconv' if args.unfused_modconv else ''}"
          f"{'; sgsim synthesis compiled' if args.compile else ''}"
          f"{'; --quick smoke run, not a measurement' if args.quick else ''}")
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.compile:  # (a) stays eager in its own process; each warm-up edit pays its compilation
        nets.generator.synthesis.forward = torch.compile(nets.generator.synthesis.forward)
    rounds = []
    for round_ in range(args.repeats):  # interleaved, so that a machine whose speed drifts slows every row alike
        measured = [measure_in_child("a", argv)] + ([measure_in_child("a'", argv)] if device.type == "cpu" else [])
        measured += [
            measure_sgsim(nets, sounds[:1], args, device, "b", "(b) sgsim"),
            measure_sgsim(nets, batch_sounds, args, device, "c", "(c) sgsim"),
        ]
        if args.repeats > 1:
            print(f"round {round_ + 1}: " + ", ".join(f"({m.key}) {m.seconds / m.edits:.2f} s/edit" for m in measured), flush=True)
        rounds.append(measured)
    results = [dataclasses.replace(row[0], seconds=statistics.median(m.seconds for m in row),
                                   step_seconds=statistics.median(m.step_seconds for m in row),
                                   peak_mib=None if row[0].peak_mib is None else max(m.peak_mib for m in row)) for row in zip(*rounds)]
    print(report(results, device_peaks(device, args.cpu_peak_gflops)))


if __name__ == "__main__":
    main()
