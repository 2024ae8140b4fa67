"""The shapes world's measurements, shared by `sgsim world build` (run.json) and scripts/bench_world.py."""

from __future__ import annotations

import numpy as np
import torch

from sgsim.worlds.shapes import COLOURS, SHAPES, Scene, clip_reads, judge, render_random


@torch.no_grad()
def generator_metrics(G, count: int = 1000, seed: int = 0, batch: int = 250) -> dict:
    """Judge `count` random seeds of G: clean rate, and each of the 12 combinations' share against its fair one."""
    generator = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device  # seeds are drawn on the CPU, so a GPU copy of G is judged on the same latents
    images = torch.cat([G(torch.randn(min(batch, count - i), G.z_dim, generator=generator).to(device), noise_mode="const").cpu()
                        for i in range(0, count, batch)])
    verdict = judge(images)
    combination = verdict.colour * len(SHAPES) + verdict.shape
    counts = np.bincount(combination[verdict.clean], minlength=len(COLOURS) * len(SHAPES))
    fair = max(1, verdict.clean.sum()) / len(counts)
    return {"images": count, "clean": float(verdict.clean.mean()), "combinations_present": int((counts > 0).sum()),
            "largest_share_over_fair": float(counts.max() / fair),
            "counts": {f"{COLOURS[i // len(SHAPES)]} {SHAPES[i % len(SHAPES)]}": int(n) for i, n in enumerate(counts)}}


def clip_zero_shot(clip, count: int = 1200, seed: int = 10**6) -> dict:
    """Zero-shot colour and shape accuracy of an sgsim ClipModel on held-out renders (a seed the training never draws)."""
    images, scene = render_random(count, seed)
    colour, shape = clip_reads(clip, images)
    return {"images": count, "colour": float((colour == scene.colour).float().mean()),
            "shape": float((shape == scene.shape).float().mean())}


@torch.no_grad()
def encoder_zero_shot(encoder, clip, dataset, workers: int = 0) -> dict:
    """Zero-shot top-1 of an audio encoder over a speech dataset's classes (the bare words as prompts)."""
    from sgsim.evaluation.embeddings import embed_sharded
    from sgsim.evaluation.prompts import class_embeddings
    from sgsim.evaluation.scoring import zero_shot_scores

    embedded = embed_sharded(encoder, dataset, None, batch_size=16, workers=workers)
    text = class_embeddings(clip, dataset.classes, ("{}",)).cpu()
    hits = zero_shot_scores(embedded.embeddings, text).argmax(1) == torch.as_tensor(embedded.labels)
    return {"clips": len(hits), "top1": float(hits.float().mean())}


# Renders no training step draws: the e4e and CLIP steps draw 62-bit seeds, the generator's reals 10**9 + seed * 10**7
# + step (below this for build seeds under 100).
HELD_OUT_PHOTOS_SEED = 2 * 10**9


def held_out_photos(count: int) -> tuple[torch.Tensor, Scene]:
    """The world's held-out "photos": `count` renders from a seed no training stage draws, and their scenes."""
    return render_random(count, HELD_OUT_PHOTOS_SEED)


@torch.no_grad()
def photo_reconstruction(photos: torch.Tensor, scene: Scene, reconstructions: torch.Tensor) -> dict:
    """How well inversions reproduce renders: pixel MSE (images in [-1, 1]) and PSNR (peak-to-peak 2) per picture,
    averaged (they stand in for LPIPS, whose VGG weights a world does not have); and the judge's colour and shape of
    each reconstruction against the render's true ones, and its centroid within POSITION_PIXELS of the render's."""
    from sgsim.worlds.judged import position_kept

    errors = (reconstructions.float().clamp(-1, 1) - photos.float()).square().mean(dim=(1, 2, 3))
    verdict, truth = judge(reconstructions), judge(photos)
    kept = {"colour": verdict.colour == scene.colour.numpy(), "shape": verdict.shape == scene.shape.numpy(),
            "position": position_kept(truth.centroid, verdict.centroid, photos.shape[-1])}
    return {"images": len(photos), "pixel_mse": float(errors.mean()),
            "psnr_db": float((10 * torch.log10(4 / errors.clamp_min(1e-10))).mean()),
            **{f"kept_{name}": float(values.mean()) for name, values in kept.items()}}
