"""The learning-rate ramp shared by GAN inversion and the edit loop (StyleGAN2 projector schedule)."""

from __future__ import annotations

import math


def ramped_lr(step: int, steps: int, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning rate at `step` of `steps`: linear warm-up over the first `rampup` fraction, cosine decay over the last `rampdown`.

    With t = step / steps: lr * min(1, t / rampup) * (0.5 - 0.5 cos(pi * min(1, (1 - t) / rampdown))),
    the schedule of NVlabs/stylegan2-ada-pytorch projector.py, also used by StyleCLIP's and SGSIM's edit loops.
    """
    t = step / steps
    warmup = min(1.0, t / rampup) if rampup > 0 else 1.0
    cooldown = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    return lr * warmup * (0.5 - 0.5 * math.cos(math.pi * cooldown))
