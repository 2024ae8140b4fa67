"""Progress of the library's long phases (an inversion, an edit, a held-out check): bars with an ETA on stderr,
shared by the command line, the jobs runner and the API (unless the caller follows the steps itself)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional


def step_bar(total: int, description: str, disable: bool = False):
    """A tqdm bar over `total` steps that goes when done. It redraws at every step (mininterval 0): a step takes far
    longer than a redraw, and so the time left shows from the first step, whatever the machine's speed."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="step", leave=False, mininterval=0, disable=disable)


@contextlib.contextmanager
def phase_bar(total: int, description: str, callback: Optional[Callable] = None) -> Iterator[Callable]:
    """The per-step callback to hand a loop of `total` steps: the caller's own `callback` when it gave one, otherwise
    one that draws a tqdm bar (steps, rate, time left) which goes when the phase ends. TQDM_DISABLE=1 hides the bars."""
    if callback is not None:
        yield callback
        return
    with step_bar(total, description) as bar:
        yield lambda *_, **__: bar.update(1)


@contextlib.contextmanager
def inversion_bar(total: int, method: str = "optimise") -> Iterator[Callable]:
    """A bar over an inversion's steps (none for an encoder's single pass); yields the callback sgsim.inversion.invert
    calls (stage, loss, ETA)."""
    with step_bar(total, f"invert ({method})", disable=total == 0) as bar:
        def on_step(progress) -> None:
            bar.set_postfix(stage=progress.stage, loss=f"{progress.loss:.4f}", refresh=False)
            bar.update(1)

        yield on_step


@contextlib.contextmanager
def edit_bar(total: int, description: str = "edit") -> Iterator[Callable]:
    """A bar over an optimisation's steps; yields its step callback (showing the total and CLIP losses). Drawn from
    the first step on, so that an error found before the optimisation starts stays the only line on stderr."""
    bars: list = []

    def on_step(step: int, losses: dict) -> None:
        if not bars:
            bars.append(step_bar(total, description))
        bars[0].set_postfix(loss=f"{losses['total']:.4f}", clip=f"{losses['clip']:.4f}", refresh=False)
        bars[0].update(1)

    try:
        yield on_step
    finally:
        for bar in bars:
            bar.close()
