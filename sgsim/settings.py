"""Settings every entry point shares (command line, demo, batch jobs, Python API), without torch: bounds and defaults."""

from __future__ import annotations

import math
from typing import Sequence

from sgsim.errors import SgsimError

SEED_MAX = 2**32 - 1  # numpy RandomState seeds, as NVIDIA's generate.py draws z
MAX_SEEDS = 10_000  # one generate run; a typo such as 0-4000000000 fails at once
MAX_STEPS = 100_000  # optimisation and inversion steps: far above any useful run, small enough to allocate the loss history
INVERT_STEPS = 1000  # steps of an inversion's W fit (sgsim.inversion.invert steps)
REFINE_STEPS = 300  # W+ refinement steps after an inversion's W fit (sgsim.inversion.invert refine_steps)
INVERSION_SEED = 0  # seeds the inversion of a photo (initial noise, w exploration noise)
VIDEO_FRAMES = 50  # about this many optimisation snapshots go into an edit's optimisation video
MAX_STRENGTH = 100.0  # |strength| bound: 1 is the edit, the demo's slider stops at 2; 1e300 was inf in float32
MAX_STRENGTHS = 256  # strengths of one run: each is a generator pass and an image written
MIX_MODES = ("weighted", "layers")  # how a sound and a text combine (sgsim.editing.Editor.edit mix)


def parse_strengths(text: str) -> list[float]:
    """'0.5,1,1.5' -> [0.5, 1.0, 1.5] (the command line's --strength, a jobs CSV's strength cell); anything else is an
    SgsimError naming the text."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SgsimError(f"{text!r} is not a comma-separated list of numbers such as 0.5,1,1.5") from None
    if not all(math.isfinite(v) for v in values):
        raise SgsimError(f"{text!r}: strengths must be finite numbers")
    return values


def check_settings(steps: int, lr: float, mix: str, strengths: Sequence[float]) -> list[float]:
    """The optimisation's settings checked (the strengths returned as floats), each problem as one SgsimError line."""
    if mix not in MIX_MODES:
        raise SgsimError(f"unknown mix {mix!r}; choose one of {', '.join(MIX_MODES)}")
    if int(steps) != steps or steps < 1:
        raise SgsimError(f"steps must be a whole number >= 1, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise SgsimError(f"lr must be a finite number > 0, got {lr}")
    return check_strengths(strengths)


def check_strengths(strengths: Sequence[float]) -> list[float]:
    """Strengths as floats; one to MAX_STRENGTHS of them, all finite and within +-MAX_STRENGTH."""
    try:
        strengths = [float(s) for s in strengths]
    except (TypeError, ValueError):
        raise SgsimError(f"strengths must be numbers, got {list(strengths)!r:.200}") from None
    if len(strengths) > MAX_STRENGTHS:
        raise SgsimError(f"{len(strengths)} strengths, more than the {MAX_STRENGTHS} one run renders; split them over several runs")
    if not strengths or not all(math.isfinite(s) and abs(s) <= MAX_STRENGTH for s in strengths):
        raise SgsimError(f"strengths must be one or more numbers from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}, got {strengths}")
    return strengths
