"""The one place that picks and checks the torch device a command runs on, before any network loads."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

from sgsim.errors import SgsimError

if TYPE_CHECKING:
    import torch

DEVICE_KINDS = ("cpu", "cuda", "mps")
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

