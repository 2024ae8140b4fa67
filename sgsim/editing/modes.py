"""One call at a time per generator: the lock every Editor call that sets a generator's modes holds.

Why a lock and not modes passed to the network: a generator's modes live in the generator. The noise an edit renders
with is the synthesis layers' noise buffers (swapped in by stylegan2.noise.swapped_noise, fitted in place by an
inversion); a precision is the blocks' dtype, clamp and layout (stylegan2.precision.synthesis_precision) and, for
bf16, weights cast once in place (sgsim.editing.precision.frozen_weights_in). Passing them per call would mean a
forward signature of our own on every layer, which NVIDIA's and rosinality's networks (loaded as they are) do not
have. Each mode is restored when its call ends, even on error; this lock makes the calls that set them take turns,
so two edits on one generator, from two threads or two Editors, never see each other's noise or precision. Code
that drives the generator itself, outside an Editor, holds generator_lock(G) for the same guarantee.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Callable, TypeVar

_LOCKS: "weakref.WeakKeyDictionary[object, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()

Method = TypeVar("Method", bound=Callable)


def generator_lock(generator) -> threading.RLock:
    """The re-entrant lock of `generator` (one per generator object, made on first use, gone with the generator)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(generator)
        if lock is None:
            lock = _LOCKS[generator] = threading.RLock()
        return lock


def holding_generator(method: Method) -> Method:
    """An Editor method that runs holding its generator's lock (see the module's docstring for why)."""
    @functools.wraps(method)
    def held(self, *args, **kwargs):
        with generator_lock(self.generator):
            return method(self, *args, **kwargs)
    return held  # type: ignore[return-value]
