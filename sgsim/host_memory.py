"""Keep freed memory in the process's heap (glibc) while a CPU edit or embedding run works, so that its large
activations reuse it.

By default glibc's malloc hands every block of 32 MiB or more back to the kernel when it is freed (munmap)
and maps a fresh one for the next request, whose pages the kernel must fault in and zero again. An edit
frees and re-requests such blocks in every layer of every step (a 256 px fp32 activation is exactly 32 MiB,
a 1024 px one 128 MiB): that page-fault work took a fifth of a 256 px fp32 step and over half of a 1024 px
one (docs/performance.md#keeping-freed-memory). Kept in the heap, freed blocks are reused instead; the price is fragmentation, a
higher peak of resident memory, so blocks larger than LARGEST_KEPT_BLOCK are left to the kernel: with them
kept, a 1024 px fp32 edit peaked 1.3x above the published loop's peak, over the memory goal. An embedding
run repeats one batch shape: kept, its peak grew by 3% and it ran 1.28x faster (1 thread).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Optional

if TYPE_CHECKING:
    import torch

# mallopt(3) parameters (glibc malloc.h) and the values sgsim sets.
M_TRIM_THRESHOLD = -1  # free memory at the heap's top beyond this goes back to the kernel
M_MMAP_THRESHOLD = -3  # blocks at least this large are mapped directly
M_MMAP_MAX = -4  # how many blocks may be mapped directly; 0 = none, all come from the heap
KEEP = 2**31 - 1  # trim threshold while kept (mallopt takes an int): up to 2 GiB stays at the heap's top
# Afterwards: glibc's defaults, with the thresholds where its own dynamic rule settles for large blocks
# (setting them stops that rule): blocks from 32 MiB on mapped, 64 MiB of free top kept.
MMAP_MAX_DEFAULT = 65536
MMAP_THRESHOLD_AFTER = 32 * 2**20
TRIM_THRESHOLD_AFTER = 64 * 2**20

# The largest activation block (bytes, whole batch) an edit may have for its freed memory to be kept. Measured
# at 1024 px, 2 steps (peak RSS; the published loop: 5643 MiB): fp32, 128 MiB blocks, 7425 MiB kept (1.32x);
# bf16, 64 MiB blocks, 5080 MiB kept (0.90x).
LARGEST_KEPT_BLOCK = 64 * 2**20
SETTING = "SGSIM_KEEP_FREED_MEMORY"  # 1: keep whatever the block size, 0: never; unset: by LARGEST_KEPT_BLOCK

_lock = threading.Lock()
_depth = 0  # nested blocks that keep memory (video and batch edits run several optimisations)


@dataclass(frozen=True)
class GlibcMalloc:
    """The two glibc calls sgsim uses."""

    mallopt: Callable[[int, int], int]  # (parameter, value) -> 1 on success
    trim: Callable[[int], int]  # malloc_trim(pad): hand the heap's free memory back to the kernel


@functools.cache
def glibc_malloc() -> Optional[GlibcMalloc]:
    """glibc's malloc controls, or None off Linux/glibc (musl has a mallopt that does nothing)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return GlibcMalloc(mallopt, trim)


def wants_kept(largest_block: Optional[int]) -> bool:
    """Whether work whose largest block is `largest_block` bytes (None: work whose peak memory is not at stake)
    should keep freed memory: SGSIM_KEEP_FREED_MEMORY decides when set; otherwise yes up to LARGEST_KEPT_BLOCK,
    unless GLIBC_TUNABLES tunes malloc (the user's choice)."""
    setting = os.environ.get(SETTING, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    small = largest_block is None or largest_block <= LARGEST_KEPT_BLOCK
    return small and "glibc.malloc." not in os.environ.get("GLIBC_TUNABLES", "")


@contextmanager
def freed_memory_kept(largest_block: Optional[int], device: "torch.device") -> Iterator[bool]:
    """Within the block, glibc's malloc serves every block from its heap and keeps freed ones there, if the work
    runs on the CPU (elsewhere its activations are not in host memory) and `wants_kept(largest_block)`; yields
    whether it does. Afterwards large blocks are mapped again and the heap's free memory goes back to the
    kernel, so a long-lived process does not hold an edit's peak."""
    global _depth
    malloc = glibc_malloc()
    keep = device.type == "cpu" and malloc is not None and wants_kept(largest_block)
    if keep:
        with _lock:
            _depth += 1
            if _depth == 1:
                malloc.mallopt(M_MMAP_MAX, 0)
                malloc.mallopt(M_TRIM_THRESHOLD, KEEP)
    try:
        yield keep
    finally:
        if keep:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    malloc.mallopt(M_MMAP_MAX, MMAP_MAX_DEFAULT)
                    malloc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_AFTER)
                    malloc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_AFTER)
                    malloc.trim(0)


def generator_memory_kept(generator, device: "torch.device", batch: int, resolution: Optional[int] = None) -> ContextManager[bool]:
    """freed_memory_kept for a loop that renders `batch` images with `generator` (StyleGAN2 or StyleGAN3) on `device`
    up to the block `resolution` (None: all; StyleGAN2 skip generators): its largest activation
    (stylegan2.families.largest_activation), at the caller's autocast dtype if any."""
    import torch

    from stylegan2.families import largest_activation

    itemsize = 2 if torch.is_autocast_enabled("cpu") else 4
    return freed_memory_kept(batch * largest_activation(generator, resolution) * itemsize, device)
