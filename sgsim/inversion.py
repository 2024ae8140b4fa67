"""GAN inversion: the W+ latent (and noise) whose StyleGAN2 image matches a photo, as NVIDIA's ADA projector finds it.

Start at the mean of 10000 mapped z, optimise one w (broadcast to every layer) and every noise buffer with
Adam on LPIPS-VGG16 at <= 256 px plus a noise autocorrelation penalty. Optionally refine after that with
every W+ row free (same losses, as Image2StyleGAN fits W+), which reconstructs a real photo more closely.
Without LPIPS weights a pixel pyramid loss stands in, which reconstructs less faithfully.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError, SgsimNotice
from sgsim.host_memory import generator_memory_kept
from sgsim.lpips import LpipsDistance
from sgsim.schedule import ramped_lr
from stylegan2.noise import swapped_noise

# Settings of the ADA projector (NVlabs/stylegan2-ada-pytorch projector.py).
W_AVG_SAMPLES = 10000  # mapped z averaged for the starting w
W_AVG_SEED = 123  # numpy RandomState seed of those z
INITIAL_NOISE_FACTOR = 0.05  # w exploration noise at step 0, in units of the w spread
NOISE_RAMP_LENGTH = 0.75  # fraction of the steps over which that noise fades out (quadratically)
REGULARIZE_NOISE_WEIGHT = 1e5  # weight of the noise autocorrelation penalty
ADAM_BETAS = (0.9, 0.999)
LPIPS_MAX_SIZE = 256  # larger images are area-downsampled to this before VGG16
REFINE_LR = 0.01  # peak learning rate of the W+ refinement: it starts from a fit, so a tenth of the W stage's (our choice)
NOISE_PYRAMID_FLOOR = 8  # the noise penalty looks at every octave down to this many pixels
PIXEL_PYRAMID_FLOOR = 8  # the stand-in pixel loss compares every octave down to this many pixels (our choice)

MAPPING_BATCH = 1000  # z mapped at once while estimating the w statistics

W_STAGE, W_PLUS_STAGE = "w", "w+"


@dataclass(frozen=True)
class InversionProgress:
    """Where an inversion stands after a step, for a progress bar."""

    stage: str  # W_STAGE (one w for every layer) or W_PLUS_STAGE (every layer free)
    step: int  # steps done, over both stages
    total: int  # steps of both stages
    loss: float  # total loss before this step
    elapsed_s: float  # since the first step began (the w statistics before it excluded)

    @property
    def eta_s(self) -> float:
        """Seconds left at the mean pace so far."""
        return self.elapsed_s / self.step * (self.total - self.step)


ProgressCallback = Callable[[InversionProgress], None]


@dataclass
class InversionResult:
    """What `invert` found; tensors live on the generator's device."""

    w_plus: torch.Tensor  # [1, num_ws, w_dim]: the optimised w repeated for every layer, then refined per layer if asked
    image: torch.Tensor  # [1, 3, R, R] in [-1, 1]: G.synthesis(w_plus) with the optimised noise
    losses: list[float]  # total loss before each step: the W steps, then the W+ steps
    used_lpips: bool  # False: the pixel pyramid loss stood in for LPIPS
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # noise_const buffers under G.synthesis, by name


def w_statistics(G, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> tuple[torch.Tensor, float]:
    """Mean w [1, 1, w_dim] and spread (RMS distance to the mean) of `samples` mapped z from RandomState(seed)."""
    device = _device_of(G)
    z = np.random.RandomState(seed).randn(samples, G.z_dim)
    with torch.no_grad():
        ws = torch.cat([
            G.mapping(torch.from_numpy(chunk).to(device, torch.float32), None)[:, :1, :]
            for chunk in np.array_split(z, max(1, samples // MAPPING_BATCH))
        ])
    w_avg = ws.mean(dim=0, keepdim=True)
    w_std = float((ws - w_avg).square().sum() / samples) ** 0.5
    return w_avg, w_std


def noise_regularization(noise: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum over buffers and octaves of squared one-pixel autocorrelations (horizontal and vertical): 0 for white noise."""
    total = torch.zeros(())
    for buffer in noise:
        x = buffer[None, None]
        while True:
            total = total + (x * torch.roll(x, shifts=1, dims=3)).mean() ** 2
            total = total + (x * torch.roll(x, shifts=1, dims=2)).mean() ** 2
            if x.shape[2] <= NOISE_PYRAMID_FLOOR:
                break
            x = F.avg_pool2d(x, kernel_size=2)
    return total


@contextlib.contextmanager
def _frozen_parameters(G) -> Iterator[None]:
    """No gradient into G's weights inside the block; each parameter's requires_grad flag is restored after."""
    flags = [(p, p.requires_grad) for p in G.parameters()]
    G.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _device_of(G) -> torch.device:
    return next(G.parameters()).device


def lpips_input(images: torch.Tensor) -> torch.Tensor:
    """Images as the projector shows them to LPIPS-VGG16: area-downsampled to LPIPS_MAX_SIZE when larger."""
    if images.shape[2] > LPIPS_MAX_SIZE:
        return F.interpolate(images, size=(LPIPS_MAX_SIZE, LPIPS_MAX_SIZE), mode="area")
    return images


def _lpips_loss(lpips: LpipsDistance, target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Squared distance of LPIPS feature vectors to the target's, both area-downsampled to at most 256 px."""
    with torch.no_grad():
        target_features = lpips.features(lpips_input(target))
    return lambda images: (lpips.features(lpips_input(images)) - target_features).square().sum()


def _pixel_pyramid_loss(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Mean squared error summed over octaves (full size down to 8 px), so coarse structure weighs as much as detail."""

    def pyramid(images: torch.Tensor) -> list[torch.Tensor]:
        levels = [images]
        while levels[-1].shape[2] > PIXEL_PYRAMID_FLOOR:
            levels.append(F.avg_pool2d(levels[-1], kernel_size=2))
        return levels

    targets = pyramid(target)
    return lambda images: sum(F.mse_loss(level, goal) for level, goal in zip(pyramid(images), targets))


def _fit(G, distance, latent: torch.Tensor, noise: dict[str, torch.Tensor], steps: int, lr: float,
         exploration: float, rng: torch.Generator, on_step: Callable[[float], None]) -> None:
    """Adam on `latent` ([1, 1, w_dim] broadcast to every layer, or [1, num_ws, w_dim]) and the noise, in place,
    with the ramped learning rate; `exploration` > 0 adds w noise of that scale fading out over NOISE_RAMP_LENGTH."""
    device = latent.device
    optimizer = torch.optim.Adam([latent, *noise.values()], betas=ADAM_BETAS, lr=lr)
    with generator_memory_kept(G, device, 1):  # every step frees and re-requests the same large blocks
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = ramped_lr(step, steps, lr)
            ws = latent
            if exploration > 0:
                scale = exploration * max(0.0, 1.0 - step / steps / NOISE_RAMP_LENGTH) ** 2
                ws = latent + torch.randn(latent.shape, generator=rng).to(device) * scale
            images = G.synthesis(ws.expand(1, G.num_ws, -1), noise_mode="const")
            loss = distance(images) + REGULARIZE_NOISE_WEIGHT * noise_regularization(noise.values()).to(device)
            value = float(loss.detach())
            if not np.isfinite(value):
                raise SgsimError(f"inversion diverged at step {step} (loss {value}); lower the learning rate (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for buffer in noise.values():
                    buffer -= buffer.mean()
                    buffer *= buffer.square().mean().rsqrt()
            on_step(value)


def invert(
    G,                                          # stylegan2.Generator (unconditional); left as it was found
    target: torch.Tensor,                       # [1, 3, R, R] in [-1, 1], R = G.img_resolution (see sgsim.images.read_image)
    steps: int = 1000,                          # Adam steps of the W fit
    lr: float = 0.1,                            # peak learning rate of the W fit's ramped schedule
    lpips: Optional[LpipsDistance] = None,      # perceptual distance; None: pixel pyramid loss, with a warning
    seed: int = 0,                              # seeds the initial noise and the w exploration noise
    callback: Optional[ProgressCallback] = None,  # called with an InversionProgress after every step
    refine_steps: int = 0,                      # Adam steps of the W+ refinement after the W fit; 0: W only
    refine_lr: float = REFINE_LR,               # peak learning rate of the refinement's ramped schedule
    start: Optional[torch.Tensor] = None,       # [1, num_ws, w_dim]: refine this W+ code (an encoder's) instead of a W fit
) -> InversionResult:
    """Find the W+ latent and noise whose image matches `target` (NVIDIA ADA projector, then `refine_steps` with
    every W+ row free). Deterministic per seed on CPU. With `start`, the W fit is skipped (`steps` may be 0) and
    the refinement begins at that code with G's own noise, so step 0 renders what the encoder's code renders.

    G's noise buffers are swapped for optimised copies only during the run and G's parameters get no gradient,
    so G is unchanged afterwards; `lpips` is moved to G's device. Re-render with `stylegan2.noise.swapped_noise(G, result.noise)`.
    """
    resolution = G.img_resolution
    if target.dim() != 4 or tuple(target.shape) != (1, 3, resolution, resolution):
        raise SgsimError(f"target must be one image shaped [1, 3, {resolution}, {resolution}], got {list(target.shape)}; "
                         f"read it with sgsim.images.read_image(path, {resolution})")
    if start is not None:
        steps = 0
        if tuple(start.shape) != (1, G.num_ws, G.w_dim):
            raise SgsimError(f"the start code must be W+ [1, {G.num_ws}, {G.w_dim}], got {list(start.shape)}")
    if steps < (0 if start is not None else 1) or not lr > 0 or refine_steps < 0 or not refine_lr > 0:
        raise SgsimError(f"inversion needs steps >= 1 (or a start code), refine_steps >= 0 and learning rates > 0, got "
                         f"steps={steps}, lr={lr}, refine_steps={refine_steps}, refine_lr={refine_lr}")
    if getattr(G, "c_dim", 0):
        raise SgsimError(f"inversion supports unconditional generators only; this one takes a {G.c_dim}-d label")

    device = _device_of(G)
    target = target.to(device, torch.float32)
    if lpips is None:
        warnings.warn("inverting without LPIPS-VGG16 weights (`sgsim weights download lpips-vgg16`): "
                      "a pixel loss stands in and the reconstruction is less faithful", category=SgsimNotice, stacklevel=2)
        distance = _pixel_pyramid_loss(target)
    else:
        distance = _lpips_loss(lpips.to(device), target)

    rng = torch.Generator().manual_seed(seed)  # CPU draws, so a seed gives the same start on every device
    noise = {
        name: (buffer.detach().clone() if start is not None else torch.randn(buffer.shape, generator=rng).to(device))
        .requires_grad_(True)
        for name, buffer in G.synthesis.named_buffers() if name.endswith("noise_const")
    }
    if start is None:
        w_avg, w_std = w_statistics(G)
    losses: list[float] = []
    started = time.perf_counter()

    def recorder(stage: str) -> Callable[[float], None]:
        def record(loss: float) -> None:
            losses.append(loss)
            if callback is not None:
                callback(InversionProgress(stage, len(losses), steps + refine_steps, loss, time.perf_counter() - started))
        return record

    with _frozen_parameters(G), swapped_noise(G, noise):
        if start is None:
            w_opt = w_avg.clone().requires_grad_(True)
            _fit(G, distance, w_opt, noise, steps, lr, w_std * INITIAL_NOISE_FACTOR, rng, recorder(W_STAGE))
            w_plus = w_opt.detach().repeat(1, G.num_ws, 1)
        else:
            w_plus = start.detach().to(device, torch.float32).clone()
        if refine_steps:
            w_plus.requires_grad_(True)
            _fit(G, distance, w_plus, noise, refine_steps, refine_lr, 0.0, rng, recorder(W_PLUS_STAGE))
            w_plus = w_plus.detach()
        with torch.no_grad():
            image = G.synthesis(w_plus, noise_mode="const")
    return InversionResult(w_plus, image, losses, lpips is not None, {name: b.detach() for name, b in noise.items()})
