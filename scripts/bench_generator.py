"""Benchmark the generators: images/s and peak memory of synthesis forward and of forward+backward with respect to
ws (latent optimisation: an edit's generator share), reference ops vs CUDA ops, fp32 vs mixed precision.

Each configuration runs in its own process so that peak memory is its own; ratios are against the first
configuration measured in the same run.

  python scripts/bench_generator.py --resolution 256              # CPU, reference ops only
  python scripts/bench_generator.py --device cuda                 # FFHQ config-f, 1024 px, random weights

--stylegan3 measures sgsim's StyleGAN3-T and -R (NVIDIA's configs: 2 mapping layers, channel_base 32768 and
channel_max 512, doubled for R) against StyleGAN2 of the same resolution, forward and forward+backward; with
--reference PATH (a checkout of NVlabs/stylegan3, never part of sgsim) also NVIDIA's own StyleGAN3 code on the
same settings, each sgsim row's ratio then being against NVIDIA's row of that network:

  python scripts/bench_generator.py --stylegan3 --reference ~/src/stylegan3 --resolution 256
  python scripts/bench_generator.py --stylegan3 --reference ~/src/stylegan3 --resolution 1024 --iters 1 --warmup 0
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
    network: str = "stylegan2"  # 'stylegan2', 'stylegan3-t' or 'stylegan3-r'
    code: str = "sgsim"  # 'sgsim', or 'nvidia' for NVlabs/stylegan3's own networks (--reference)

    @property
    def label(self) -> str:
        precision = "fp32" if self.num_fp16_res == 0 else f"fp16x{self.num_fp16_res}"
        network = "" if self.network == "stylegan2" and self.code == "sgsim" else f"{self.code:6s} {self.network:11s} "
        return f"{network}{self.ops:4s} {precision:8s} {'fwd+bwd(ws)' if self.backward else 'forward':11s}"


def configs_for(device: str) -> list[Config]:
    if device == "cpu":  # no CUDA kernels and no fp16 on the CPU
        return [Config("ref", 0, False), Config("ref", 0, True)]
    return [Config(ops, fp16, backward) for backward in (False, True) for ops in ("ref", "cuda") for fp16 in (0, 4)]


def stylegan3_configs(device: str, reference: bool) -> list[Config]:
    """Per pass: StyleGAN2 (the baseline), then per StyleGAN3 config NVIDIA's code (if given) and sgsim's."""
    ops = "ref" if device == "cpu" else "cuda"
    configs = []
    for backward in (False, True):
        configs.append(Config(ops, 0, backward))
        for network in ("stylegan3-t", "stylegan3-r"):
            codes = ("nvidia", "sgsim") if reference and not backward else ("sgsim",)
            configs += [Config(ops, 0, backward, network, code) for code in codes]
    return configs


def stylegan3_kwargs(network: str, args: argparse.Namespace) -> dict:
    """NVIDIA's train.py settings of config T or R, flattened as networks_stylegan3.Generator takes them."""
    r = network == "stylegan3-r"
    kwargs = dict(channel_base=args.channel_base * (2 if r else 1), channel_max=args.channel_max * (2 if r else 1),
                  magnitude_ema_beta=0.5 ** (32 / 20000), num_fp16_res=0)
    return {**kwargs, **(dict(conv_kernel=1, use_radial_filters=True) if r else {})}


def build(config: Config, args: argparse.Namespace) -> torch.nn.Module:
    if config.network == "stylegan2":
        return Generator(512, 0, 512, args.resolution, 3, synthesis_kwargs=dict(
            channel_base=args.channel_base, channel_max=args.channel_max, num_fp16_res=config.num_fp16_res))
    kwargs = stylegan3_kwargs(config.network, args)
    if config.code == "nvidia":
        sys.path.insert(0, os.path.expanduser(args.reference))
        from training.networks_stylegan3 import Generator as NvidiaGenerator

        return NvidiaGenerator(z_dim=512, c_dim=0, w_dim=512, img_resolution=args.resolution, img_channels=3,
                               mapping_kwargs={"num_layers": 2}, **kwargs)
    from stylegan2.networks_stylegan3 import Generator as Generator3

    return Generator3(512, 0, 512, args.resolution, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs=kwargs)


def measure(config: Config, args: argparse.Namespace) -> dict:
    """Time `iters` generator calls after `warmup` ones; return images/s and peak memory in MiB."""
    os.environ["SGSIM_CUDA_OPS"] = "0" if config.ops == "ref" else "1"
    device = torch.device(args.device)
    torch.manual_seed(0)
    G = build(config, args).eval().requires_grad_(False).to(device)
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
    parser.add_argument("--stylegan3", action="store_true", help="StyleGAN3-T and -R against StyleGAN2 (and --reference)")
    parser.add_argument("--reference", default=None, metavar="PATH", help="a checkout of NVlabs/stylegan3 to time too")
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
    nvidia: dict[tuple[str, bool], dict] = {}  # NVIDIA's result per (network, backward): the baseline of sgsim's row
    configs = stylegan3_configs(args.device, args.reference is not None) if args.stylegan3 else configs_for(args.device)
    for config in configs:
        run = subprocess.run(
            [sys.executable, __file__, *passthrough, "--worker", json.dumps(asdict(config))], capture_output=True, text=True
        )
        if run.returncode != 0:
            print(f"{config.label}  failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        if args.stylegan3 and config.network == "stylegan2":
            baseline = result  # each pass (forward, fwd+bwd) against StyleGAN2 at the same resolution
        baseline = baseline or result
        if config.code == "nvidia":
            nvidia[config.network, config.backward] = result
        against = nvidia.get((config.network, config.backward), baseline)
        print(
            f"{config.label}  {result['images_per_s']:9.3f} img/s  x{result['images_per_s'] / against['images_per_s']:5.2f}   "
            f"peak {result['peak_mib']:9.1f} MiB  x{result['peak_mib'] / against['peak_mib']:5.2f}"
        )


if __name__ == "__main__":
    main()
