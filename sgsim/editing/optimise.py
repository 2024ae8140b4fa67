"""The latent optimisation of SGSIM / StyleCLIP: move W+ until CLIP sees the target in the image.

Fixes the reference's defects (docs/reference.md#reference-defects-fixed): images are clamped, rescaled and
normalised by the CLIP wrapper before the image tower, the identity loss sends its gradient to
the edited image, and a NaN or infinite loss stops the run instead of silently poisoning it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError
from sgsim.schedule import ramped_lr

LOSS_NAMES = ("total", "clip", "latent", "id")

# callback(step, losses): called after every step with the batch-mean of each loss in LOSS_NAMES.
StepCallback = Callable[[int, dict[str, float]], None]


class IdentityDistance(Protocol):
    """to_source(source_images)(images) -> [N] identity distances, differentiable in `images` (sgsim.identity.IdentityLoss)."""

    def to_source(self, source_images: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]: ...


class EditDiverged(SgsimError):
    """The loss became NaN or infinite; the last latents whose loss was finite ride along."""

    def __init__(self, message: str, step: int, last_latents: torch.Tensor, losses: dict[str, np.ndarray]):
        super().__init__(message)
        self.step = step
        self.last_latents = last_latents  # [N, num_ws, w_dim], the latents of the last finite step
        self.losses = losses  # per-step losses up to (not including) `step`


@dataclass
class OptimisedLatents:
    """Latents after the last step, the per-step losses and the images recorded along the way."""

    latents: torch.Tensor  # [N, num_ws, w_dim]
    losses: dict[str, np.ndarray]  # name -> [steps, N]
    frames: list[torch.Tensor] = field(default_factory=list)  # each [N, 3, H, W] in [-1, 1], on the CPU


def free_rows(layers: Optional[Iterable[int]], num_ws: int) -> torch.Tensor:
    """The W+ rows the optimiser may move, checked against the generator's num_ws."""
    if layers is None:
        return torch.arange(num_ws)
    rows = sorted({int(i) for i in layers})
    if not rows or rows[0] < 0 or rows[-1] >= num_ws:
        raise SgsimError(f"layers must be W+ row indices in 0..{num_ws - 1}, got {list(layers)}")
    return torch.tensor(rows)


def optimise_latents(
    generator,  # stylegan2.Generator: synthesis(ws, noise_mode='const') -> NCHW in [-1, 1]
    clip,  # encoders ClipModel: encode_image(images in [-1, 1]) -> [N, embed_dim]
    source: torch.Tensor,  # [N, num_ws, w_dim] W+ latents to start from and stay near
    directions: torch.Tensor,  # [N, embed_dim] L2-normalised CLIP-space targets, one per latent
    *,
    steps: int,  # number of Adam steps
    lr: float,  # peak learning rate of the ramped schedule
    lambda_latent: float,  # weight of the sum of squares ||w - w_src||^2 per sample
    lambda_id: float = 0.0,  # weight of the identity distance
    identity: Optional[IdentityDistance] = None,  # used only when lambda_id > 0
    layers: Optional[Iterable[int]] = None,  # W+ rows that move; the others stay exactly as in `source`
    callback: Optional[StepCallback] = None,
    record_every: int = 0,  # > 0: keep the images of every k-th step (for a video)
) -> OptimisedLatents:
    """Adam on W+ minimising, per sample, (1 - cos(CLIP(G(w)), target)) + lambda_latent ||w - w_src||^2
    + lambda_id identity(G(w), G(w_src)). The batch loss is the sum of per-sample losses, so each
    sample follows the path it would follow alone (up to float rounding)."""
    source = source.detach()
    rows = free_rows(layers, source.shape[1]).to(source.device)
    free = source[:, rows].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([free], lr=lr)
    use_identity = identity is not None and lambda_id > 0
    distance_to_source = None
    if use_identity:  # the source's identity does not change between steps: embed it once
        with torch.no_grad():
            distance_to_source = identity.to_source(generator.synthesis(source, noise_mode="const"))
    history = {name: np.zeros((steps, source.shape[0])) for name in LOSS_NAMES}
    frames: list[torch.Tensor] = []
    last_finite = source.clone()

    def diverged(step: int, what: str) -> EditDiverged:
        return EditDiverged(
            f"the edit diverged at step {step}: the {what} became NaN or infinite; "
            f"lower --lr (now {lr}) or the loss weights; the last finite latents are attached to this error",
            step, last_finite, {k: v[:step] for k, v in history.items()},
        )

    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = ramped_lr(step, steps, lr)
        w = source.index_copy(1, rows, free)
        images = generator.synthesis(w, noise_mode="const")
        features = F.normalize(clip.encode_image(images).float(), dim=-1)
        losses = {"clip": 1.0 - (features * directions).sum(-1)}
        losses["latent"] = (w - source).square().flatten(1).sum(1)
        losses["id"] = distance_to_source(images) if use_identity else torch.zeros_like(losses["clip"])
        losses["total"] = losses["clip"] + lambda_latent * losses["latent"] + lambda_id * losses["id"]
        if record_every > 0 and step % record_every == 0:
            frames.append(images.detach().cpu())
        optimizer.zero_grad(set_to_none=True)
        # Backward outside any autocast region the caller opened (edit_precision's bf16): on the CPU the backward
        # runs in this thread, and autocast would recast its matmuls (PyTorch advises against backward under it).
        with torch.autocast(device_type=source.device.type, enabled=False):
            losses["total"].sum().backward()
        optimizer.step()
        # One device-to-host copy per step, once the whole step is queued: the device need not idle while the
        # host queues the backward pass. A non-finite loss still stops the run at this step, with the latents
        # of the previous one (this step's update is discarded with the error).
        values = torch.stack([losses[name].detach() for name in LOSS_NAMES]).cpu().numpy()
        if not np.isfinite(values[0]).all():
            raise diverged(step, "loss")
        last_finite = w.detach()
        for name, row in zip(LOSS_NAMES, values):
            history[name][step] = row
        if callback is not None:
            callback(step, {name: float(history[name][step].mean()) for name in LOSS_NAMES})
    latents = source.index_copy(1, rows, free.detach())
    if not torch.isfinite(latents).all():
        raise diverged(steps, "latent")
    return OptimisedLatents(latents=latents, losses=history, frames=frames)
