"""The one place that picks and checks the torch device a command runs on, before any network loads, and the
precision it computes at there (the CPU's bfloat16 support decides the default)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from sgsim.errors import SgsimError, SgsimNotice

if TYPE_CHECKING:
    import torch

DEVICE_KINDS = ("cpu", "cuda", "mps")
PRECISIONS = ("fp32", "mixed", "bf16")  # of an edit; embeddings offer fp32 and bf16
_DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def default_device() -> "torch.device":
    """cuda when a GPU is usable, else cpu."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(device: Union[str, "torch.device", None]) -> "torch.device":
    """The torch device named by `device` (None: `default_device()`), refused now with one actionable line
    when it is not a device name or this machine has no such device, instead of a RuntimeError mid-run."""
    import torch

    if device is None or device == "":
        return default_device()
    text = str(device).strip().lower()
    match = _DEVICE_PATTERN.match(text)
    if match is None:
        raise SgsimError(f"--device {device!r} is not a device name; use cpu, cuda or cuda:N")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SgsimError(f"--device {device}: this machine has no usable CUDA GPU; use --device cpu")
        if index is not None and int(index) >= count:
            raise SgsimError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}; pick one of them")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise SgsimError(f"--device {device}: Apple's MPS backend is not available on this machine; use --device cpu")
    if kind == "cpu" and index not in (None, "0"):
        raise SgsimError(f"--device {device}: there is one CPU device; use --device cpu")
    return torch.device(text)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run computes at, and why (recorded in run.json's settings)."""

    name: str  # 'fp32', 'mixed' or 'bf16'
    reason: str


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without it oneDNN emulates bf16 and
    the 'bf16' path is slower than 'fp32' (docs/performance.md#default-precision-on-a-cpu)."""
    import torch

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def default_precision(device: Union[str, "torch.device"]) -> PrecisionChoice:
    """'mixed' on CUDA, where fp16 kernels are fast; on a CPU 'bf16' where it computes bfloat16 natively
    (measured 1.9x fp32's steps/s at 256 px with AVX512-BF16) and 'fp32' where it would emulate it."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return PrecisionChoice("mixed", "default on CUDA: fp16 generator blocks and CLIP under autocast")
    if kind == "cpu" and native_bf16():
        return PrecisionChoice("bf16", "default on this CPU: it has native bfloat16 (AVX512-BF16 or AMX)")
    return PrecisionChoice("fp32", f"default on {kind}: no native bfloat16 (AVX512-BF16 or AMX) here")


def choose_precision(precision: Optional[str], device: Union[str, "torch.device"],
                     offered: tuple[str, ...] = PRECISIONS) -> PrecisionChoice:
    """The precision to use on `device`: the device's default for None, else `precision` if it is among the caller's
    `offered` ones (embedding offers fp32 and bf16) and can run there."""
    import torch

    if precision is None:
        return default_precision(device)
    if precision not in offered:
        raise SgsimError(f"unknown precision {precision!r}; choose one of {', '.join(offered)}")
    if precision == "mixed" and torch.device(device).type != "cuda":
        raise SgsimError(f"precision='mixed' runs fp16 kernels on CUDA, but the device is {device}; use 'fp32' or 'bf16'")
    if precision == "bf16" and torch.device(device).type == "cpu" and not native_bf16():
        warnings.warn("this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX): precision='bf16' is "
                      "emulated and slower than 'fp32' here", SgsimNotice, stacklevel=3)
    return PrecisionChoice(precision, "asked for")
