"""The shapes world's numbers, measured with its judge: `python scripts/bench_world.py [--world-dir DIR]`.

Prints a table of the issue's targets against what the built world reaches: generator cleanliness and balance over
1000 seeds, CLIP zero-shot colour and shape on 1200 held-out renders, and the audio encoder's zero-shot accuracy
over the seven words on held-out voices (the speech under DIR/speech, present after `sgsim world build`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-dir", type=Path, default=None, help="a built world (default: the bundled examples/worlds/shapes)")
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--renders", type=int, default=1200)
    args = parser.parse_args()

    from encoders.clip import load_clip
    from encoders.registry import load_audio_encoder
    from sgsim.datasets import open_dataset
    from sgsim.worlds import resolve_world
    from sgsim.worlds.metrics import clip_zero_shot, encoder_zero_shot, generator_metrics
    from stylegan2 import load_generator

    files = resolve_world("shapes", args.world_dir)
    G = load_generator(files.generator)
    clip = load_clip(files.clip_model, pretrained=files.clip)
    generator = generator_metrics(G, args.seeds)
    zero_shot = clip_zero_shot(clip, args.renders)
    rows = [
        ("generator: judged clean", ">= 95 %", f"{100 * generator['clean']:.1f} %"),
        ("generator: combinations present", "12 of 12", f"{generator['combinations_present']} of 12"),
        ("generator: largest combination share / fair", "<= 2", f"{generator['largest_share_over_fair']:.2f}"),
        ("CLIP zero-shot colour", ">= 98 %", f"{100 * zero_shot['colour']:.1f} %"),
        ("CLIP zero-shot shape", ">= 95 %", f"{100 * zero_shot['shape']:.1f} %"),
    ]
    speech = files.root / "speech" / "test.csv"
    if speech.is_file():
        encoder = load_audio_encoder(files.encoder_name, checkpoint=files.encoder)
        words = encoder_zero_shot(encoder, clip, open_dataset(speech))
        rows.append(("audio encoder zero-shot, held-out voices", ">= 90 %", f"{100 * words['top1']:.1f} %"))
    else:
        rows.append(("audio encoder zero-shot, held-out voices", ">= 90 %", f"n/a (no {speech})"))
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'target':<9}  reached")
    for name, target, reached in rows:
        print(f"{name:<{width}}  {target:<9}  {reached}")


if __name__ == "__main__":
    main()
