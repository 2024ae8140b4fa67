"""Benchmark the StyleGAN2 generator: images/s and peak memory of synthesis forward and of forward+backward
with respect to ws (latent optimisation), reference ops vs CUDA ops, fp32 vs mixed precision.

Each configuration runs in its own process so that peak memory is its own; ratios are against the first
configuration measured in the same run.

  python scripts/bench_generator.py --resolution 256              # CPU, reference ops only
  python scripts/bench_generator.py --device cuda                 # FFHQ config-f, 1024 px, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from stylegan2 import Generator


@dataclass(frozen=True)
class Config:
    ops: str  # 'ref' or 'cuda'
    num_fp16_res: int  # 0 = fp32; 4 = ADA's mixed precision
    backward: bool  # False: forward only; True: forward + backward w.r.t. ws

    @property
    def label(self) -> str:
        precision = "fp32" if self.num_fp16_res == 0 else f"fp16x{self.num_fp16_res}"
        return f"{self.ops:4s} {precision:8s} {'fwd+bwd(ws)' if self.backward else 'forward':11s}"


def configs_for(device: str) -> list[Config]:
    if device == "cpu":  # no CUDA kernels and no fp16 on the CPU
        return [Config("ref", 0, False), Config("ref", 0, True)]
    return [Config(ops, fp16, backward) for backward in (False, True) for ops in ("ref", "cuda") for fp16 in (0, 4)]


def measure(config: Config, args: argparse.Namespace) -> dict:
    """Time `iters` generator calls after `warmup` ones; return images/s and peak memory in MiB."""
    os.environ["SGSIM_CUDA_OPS"] = "0" if config.ops == "ref" else "1"
    device = torch.device(args.device)
    torch.manual_seed(0)
    G = Generator(
        512, 0, 512, args.resolution, 3,
        synthesis_kwargs=dict(channel_base=args.channel_base, channel_max=args.channel_max, num_fp16_res=config.num_fp16_res),
    ).eval().requires_grad_(False).to(device)
    ws = G.mapping(torch.randn(args.batch, G.z_dim, device=device), None, truncation_psi=0.7)

    def step() -> None:
        if config.backward:
            w = ws.detach().requires_grad_(True)
            G.synthesis(w).square().mean().backward()
        else:
            with torch.no_grad():
                G.synthesis(ws)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"images_per_s": args.iters * args.batch / elapsed, "peak_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--resolution", type=int, default=None, help="default 256 on cpu, 1024 on cuda")
    parser.add_argument("--channel-base", type=int, default=32768)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--batch", type=int, default=None, help="default 1 on cpu, 4 on cuda")
    parser.add_argument("--iters", type=int, default=None, help="timed calls; default 3 on cpu, 20 on cuda")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one configuration as JSON
    args = parser.parse_args()
    cpu = args.device == "cpu"
    args.resolution = args.resolution or (256 if cpu else 1024)
    args.batch = args.batch or (1 if cpu else 4)
    args.iters = args.iters or (3 if cpu else 20)
    if args.worker:
        print(json.dumps(measure(Config(**json.loads(args.worker)), args)))
        return

    print(f"device={args.device} resolution={args.resolution} channel_base={args.channel_base} channel_max={args.channel_max} "
          f"batch={args.batch} iters={args.iters} torch={torch.__version__} threads={torch.get_num_threads()}")
    passthrough = sys.argv[1:]
    baseline = None
    for config in configs_for(args.device):
        run = subprocess.run(
            [sys.executable, __file__, *passthrough, "--worker", json.dumps(asdict(config))], capture_output=True, text=True
        )
        if run.returncode != 0:
            print(f"{config.label}  failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        baseline = baseline or result
        print(
            f"{config.label}  {result['images_per_s']:9.3f} img/s  x{result['images_per_s'] / baseline['images_per_s']:5.2f}   "
            f"peak {result['peak_mib']:9.1f} MiB  x{result['peak_mib'] / baseline['peak_mib']:5.2f}"
        )


if __name__ == "__main__":
    main()
