"""`steps="auto"`: an edit that stops once its loss has flattened, by a rule on the loss history held as data.

The rule judges each batch row (sample) on its own total loss. A row that has flattened cools its own learning rate
to zero over the rule's cooldown and moves no more (without a cooldown it keeps the latents of its lowest total loss
so far: at the full learning rate the loss bounces) while the batch runs on, and the batch stops when every row has
ended: rows score alone and have their own learning rates, so each row's result is the one it would get alone,
whatever it is batched with (sgsim.editing.optimise.optimise_latents). Only the history decides, so the same inputs
stop at the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from sgsim.errors import SgsimError
from sgsim.settings import AUTO_STEPS


@dataclass(frozen=True)
class FlatteningRule:
    """A row has flattened after step t (t + 1 steps done, at least `min_steps`) when its best total loss so far fell by
    at most `min_improvement` of itself over the last `window` steps. Without a cooldown it stops there with the
    latents of its lowest loss; with one it runs `cooldown` more steps, its learning rate cooled to zero by a cosine
    (the fixed run gains its last loss in its own ramp-down), and ends on the last. A run stops when every row has,
    and at `max_steps` otherwise. The learning-rate ramp (sgsim.schedule.ramped_lr) runs over `max_steps`, so the steps
    before a row flattens are exactly those of the fixed `max_steps` run."""

    window: int  # steps the improvement is measured over
    min_improvement: float  # relative fall of the best loss over `window` below which a row has flattened
    min_steps: int  # never flatten before this many steps
    max_steps: int  # the cap: the fixed default's steps
    cooldown: int = 0  # steps a flattened row runs on while its learning rate cools to zero; 0: it stops at once

    def __post_init__(self):
        if not (1 <= self.window < self.min_steps <= self.max_steps and self.min_improvement >= 0 and self.cooldown >= 0):
            raise SgsimError(f"a flattening rule needs 1 <= window < min_steps <= max_steps, min_improvement >= 0 and "
                             f"cooldown >= 0, got {self}")

    def cooling(self, since: np.ndarray) -> np.ndarray:
        """[rows] the factor on the learning rate of a step taken `since` [rows] steps after each row flattened (-1: not
        flattened, factor 1): a cosine from 1 down to 0, which it reaches after `cooldown` steps and keeps."""
        factor = 0.5 + 0.5 * np.cos(np.pi * np.minimum(since + 1, self.cooldown + 1) / (self.cooldown + 1))
        return np.where(since < 0, 1.0, factor)

    def flattened(self, history: np.ndarray) -> np.ndarray:
        """[rows] whether each row of `history` [steps done, rows] (total loss; NaN where a row was not scored at a
        step) has flattened after its last step. A row scored at no step yet has not."""
        done = history.shape[0]
        if done < self.min_steps:
            return np.zeros(history.shape[1], dtype=bool)
        best = np.fmin.accumulate(history[: done], axis=0)  # running minimum, skipping the NaN of unscored steps
        before, now = best[done - 1 - self.window], best[done - 1]
        with np.errstate(invalid="ignore"):
            return (before - now) <= self.min_improvement * np.abs(before)

    def stop_steps(self, history: np.ndarray) -> list[Optional[int]]:
        """Per row of `history` [steps, rows], the steps after which this rule first finds it flattened; None: not
        within the history or the cap (what a run records, for benchmarks and tests)."""
        found: list[Optional[int]] = [None] * history.shape[1]
        for done in range(self.min_steps, min(len(history), self.max_steps) + 1):
            for row in np.flatnonzero(self.flattened(history[:done])):
                found[row] = found[row] or done
        return found


# The rule of steps="auto", chosen from one 300-step run each of the shapes world's colour edits by sound (20) and of
# a 256 px random FFHQ-size network, every candidate rule read from its history, then the candidates with a cooldown
# each run on their own (docs/performance.md#steps-auto: `scripts/bench_world.py --part rules`, `scripts/bench_edit.py
# --auto-steps`). Stopped at once, no rule kept the 256 px CLIP loss within 0.01 of the 300-step edit's (+0.0154): that
# edit gains it in its learning-rate ramp-down, so a flattened edit gets a 50-step ramp-down of its own (25 and 75
# missed the latent distance). Flattening from step 100, it lost one world edit of 20 and missed the identity or
# latent bound in 3 of 5 256 px edits by up to ten times; from step 150 it kept the world's success (15 %) in 202 steps
# an edit and missed in 3 of 5 by up to four times. Not a default: stopping early moves a face more than CLIP sees.
AUTO_RULE = FlatteningRule(window=20, min_improvement=0.0005, min_steps=150, max_steps=300, cooldown=50)


def steps_and_rule(steps: Union[int, str]) -> tuple[int, Optional[FlatteningRule]]:
    """A steps setting as the loop runs it: (the steps to run or the cap, the rule that may stop it earlier)."""
    return (AUTO_RULE.max_steps, AUTO_RULE) if steps == AUTO_STEPS else (int(steps), None)


def step_cap(steps: Union[int, str]) -> int:
    """The most steps a steps setting runs (progress bars, snapshot spacing, time estimates)."""
    return steps_and_rule(steps)[0]


def stop_reason(rule: Optional[FlatteningRule], used: int, rows: list[int], flattened: int) -> str:
    """Why a run of `used` steps under `rule` stopped (`rows`: each sample's steps; `flattened`: how many samples the
    rule stopped), as run.json and the command line say it."""
    if rule is None:
        return f"fixed: {used} steps asked for"
    each = f"samples kept after {', '.join(map(str, rows))} steps" if len(rows) > 1 else ""
    if flattened == len(rows):
        ended = (f"flattened and cooled (the learning rate to zero over {rule.cooldown} steps) by step {used}"
                 if rule.cooldown else f"flattened at step {used}")
        return (f"{ended}: the best total loss fell by at most {100 * rule.min_improvement:g} % over the last "
                f"{rule.window} steps" + (f"; {each}" if each else ""))
    return (f"reached the cap of {rule.max_steps} steps, {flattened} of {len(rows)} samples flattened "
            f"before it" + (f"; {each}" if each else ""))
