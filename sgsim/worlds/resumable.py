"""The training loop a world's trainers share: a state file written atomically every checkpoint_every steps, and a
resume that refuses a state written with other settings.

The state is the step counter beside the networks and optimisers (and the run's history and seconds), so a trainer
that draws every step's randomness from (seed, step) resumes to the run it would have made uninterrupted.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from sgsim.atomic import atomic_output
from sgsim.errors import SgsimError

# Settings a resumed run may change: how far to train and how often to save do not alter any step.
RESUMABLE_CHANGES = ("steps", "checkpoint_every")
HISTORY_EVERY = 100  # steps between the entries of a run's history (and its last step)


def seeded_generator(*numbers: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of integers (seed, step, ...)."""
    seed = 0
    for number in numbers:
        seed = (seed * 1_000_003 + number + 1) % 2**63
    return torch.Generator().manual_seed(seed)


class ResumableTrainer:
    """A trainer whose config (a dataclass with steps, seed and checkpoint_every) and `state_parts` are all a resumed
    run needs; subclasses build their networks, then define `train_step` and `state_parts`."""

    state_format: str  # the state file's "format"; a file with another one is refused
    state_kind: str  # what the state file holds, for messages ("CLIP training")

    def __init__(self, config: Any, state_path: str | Path):
        self.config, self.state_path = config, Path(state_path)
        self.step, self.seconds, self.history = 0, 0.0, []

    def state_parts(self) -> dict[str, Any]:
        """The objects with a state_dict to save, by their key in the state file, in the order they are saved."""
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        """One update; advances self.step and returns the values to report."""
        raise NotImplementedError

    def save_state(self) -> None:
        """Everything a resumed run needs, atomically."""
        state = {"format": self.state_format, "config": asdict(self.config), "step": self.step, "seconds": self.seconds,
                 "history": self.history, **{name: part.state_dict() for name, part in self.state_parts().items()}}
        with atomic_output(self.state_path) as stream:
            torch.save(state, stream)

    def resume(self) -> bool:
        """Continue from the state file when there is one; False when starting afresh."""
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != self.state_format:
            raise SgsimError(f"{self.state_path} is not a {self.state_kind} state of this version; delete it to start afresh")
        mine, saved = asdict(self.config), state["config"]
        changed = sorted(key for key in mine if key not in RESUMABLE_CHANGES and saved.get(key) != mine[key])
        if changed:
            raise SgsimError(f"{self.state_path} was written with other settings ({', '.join(changed)}); delete it or use the same settings")
        for name, part in self.state_parts().items():
            part.load_state_dict(state[name])
        self.step, self.seconds, self.history = state["step"], state["seconds"], state["history"]
        return True

    def train_to(self, progress: Callable[[int, int, dict[str, float]], None] | None = None, max_steps: int | None = None) -> None:
        """Train to config.steps (or stop after `max_steps` in total, as a kill would), saving the state on the way."""
        stop = self.config.steps if max_steps is None else min(max_steps, self.config.steps)
        while self.step < stop:
            started = time.perf_counter()
            values = self.train_step()
            self.seconds += time.perf_counter() - started
            if self.step % HISTORY_EVERY == 0 or self.step == self.config.steps:
                self.history.append({"step": self.step, **values})
            if progress:
                progress(self.step, self.config.steps, values)
            if self.step % self.config.checkpoint_every == 0 or self.step == stop:
                self.save_state()
