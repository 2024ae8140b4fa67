"""Time a sound-guided edit at full scale with random weights: no downloads needed.

The generator has the architecture of SGSIM's landscape.pt (rosinality 256 px, channel_multiplier 2 =
channel_base 32768, channel_max 512, 8 mapping layers, z/w 512), CLIP is a full-size ViT-B/32 and the
audio encoder SGSIM's ResNet18, all randomly initialised (seeded), so the timing is that of the real
networks. Prints one JSON line; with --steps below the run's --total-steps it extrapolates linearly.

    .venv/bin/python scripts/time_edit_cpu.py --steps 10 --total-steps 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "raining.wav"


def landscape_sized_generator():
    """A StyleGAN2 generator shaped like SGSIM's landscape.pt, with seeded random weights."""
    from stylegan2.networks import Generator

    return Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                     mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps actually run")
    parser.add_argument("--total-steps", type=int, default=300, help="steps to extrapolate the time to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--audio", type=Path, default=SHARED_AUDIO)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import open_clip

    from encoders.clip import ClipModel
    from encoders.registry import build_audio_encoder
    from sgsim.editing import Editor, Target

    torch.manual_seed(0)
    started = time.perf_counter()
    editor = Editor(
        landscape_sized_generator(),
        build_audio_encoder("sgsim-resnet18"),
        clip=ClipModel.from_open_clip(open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)),
        device=args.device,
        preset="landscape",
    )
    built = time.perf_counter()
    step_times: list[float] = []

    def on_step(step: int, losses: dict[str, float]) -> None:
        step_times.append(time.perf_counter())

    editor.edit(0, Target(args.audio), steps=args.steps, callback=on_step)
    done = time.perf_counter()
    per_step = (step_times[-1] - step_times[0]) / max(1, len(step_times) - 1)  # steady state: the first step warms up
    first_step = step_times[0] - built  # sound embedding, source latent and the first (warm-up) step
    render = done - step_times[-1]  # the final images
    print(json.dumps({
        "device": args.device, "threads": torch.get_num_threads(), "steps_run": args.steps,
        "build_s": round(built - started, 2), "edit_s": round(done - built, 2),
        "first_step_s": round(first_step, 2), "per_step_s": round(per_step, 3), "render_s": round(render, 2),
        "estimated_s_for_total_steps": round(first_step + per_step * (args.total_steps - 1) + render, 1),
        "total_steps": args.total_steps,
    }))


if __name__ == "__main__":
    main()
