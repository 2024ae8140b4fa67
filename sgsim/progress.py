"""Progress of the library's long phases: a bar with an ETA on stderr unless the caller follows the steps itself."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional


@contextlib.contextmanager
def phase_bar(total: int, description: str, callback: Optional[Callable] = None) -> Iterator[Callable]:
    """The per-step callback to hand a loop of `total` steps: the caller's own `callback` when it gave one, otherwise
    one that draws a tqdm bar (steps, rate, time left) which goes when the phase ends. TQDM_DISABLE=1 hides the bars."""
    if callback is not None:
        yield callback
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="step", leave=False) as bar:
        yield lambda *_: bar.update(1)
