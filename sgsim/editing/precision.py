"""The edit loop's precision: 'fp32' everywhere, or 'mixed' (fp16 high-resolution generator blocks, CLIP under autocast) on CUDA.

'mixed' trades a bounded loss of accuracy for speed: its edited images must stay within MIXED_MIN_PSNR_DB
of the fp32 path's on the same inputs (tests/sgsim/test_precision.py checks it on a GPU).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch

from sgsim.errors import SgsimError
from stylegan2.precision import FP32, MIXED, SynthesisPrecision, synthesis_precision

PRECISIONS = ("fp32", "mixed")
MIXED_MIN_PSNR_DB = 35.0  # issue #6: the fast path's edited images within 35 dB PSNR of the fp32 path's


def default_precision(device: Union[str, torch.device]) -> str:
    """'mixed' on CUDA, where fp16 kernels are fast; 'fp32' elsewhere, so CPU results stay as they were."""
    return "mixed" if torch.device(device).type == "cuda" else "fp32"


def check_precision(precision: Optional[str], device: Union[str, torch.device]) -> str:
    """The precision to use on `device`: the device's default for None, else `precision` if it can run there."""
    if precision is None:
        return default_precision(device)
    if precision not in PRECISIONS:
        raise SgsimError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "mixed" and torch.device(device).type != "cuda":
        raise SgsimError(f"precision='mixed' runs fp16 kernels on CUDA, but the device is {device}; use precision='fp32'")
    return precision


class AutocastImageEncoder:
    """A CLIP model whose image tower runs under autocast (fp16 matmuls, fp32 reductions); embeddings come back fp32."""

    def __init__(self, clip, dtype: torch.dtype = torch.float16):
        self.clip = clip
        self.dtype = dtype

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=images.device.type, dtype=self.dtype):
            return self.clip.encode_image(images).float()


@contextmanager
def edit_precision(precision: str, generator, clip, synthesis: SynthesisPrecision = MIXED) -> Iterator[object]:
    """Within the block, `generator` runs at `precision`; yields the CLIP image encoder to use with it.

    'fp32' also keeps the fp16 blocks of a mixed-precision network (ADA's) in fp32. `synthesis` says how
    'mixed' runs the generator (MIXED: NVIDIA's num_fp16_res 4 and conv_clamp 256).
    """
    if precision == "fp32":
        with synthesis_precision(generator.synthesis, FP32):
            yield clip
    else:
        with synthesis_precision(generator.synthesis, synthesis):
            yield AutocastImageEncoder(clip)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB between two batches of generator images in [-1, 1] (clamped first; peak-to-peak 2), over all pixels."""
    error = (images.float().clamp(-1, 1) - reference.float().clamp(-1, 1)).square().mean().item()
    return float("inf") if error == 0 else 10.0 * math.log10(4.0 / error)
