"""The edit loop's precision: 'fp32' everywhere; 'mixed' (fp16 high-resolution generator blocks, CLIP under
autocast) on CUDA; or 'bf16' (generator and identity network under bfloat16 autocast) on any device.

The reduced precisions trade a bounded loss of accuracy for speed: the generator's images of the same
latents stay within 35 dB PSNR of fp32's (docs/reference.md#performance-targets; the bounds live in tests/sgsim/test_precision.py, 'mixed' on a GPU only).
Only the optimisation runs reduced: the images an edit returns are rendered in fp32.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch

from sgsim.errors import SgsimError
from stylegan2.precision import FP32, MIXED, SynthesisPrecision, synthesis_precision

PRECISIONS = ("fp32", "mixed", "bf16")
# On a CPU the modulated convolutions scale activations instead of running one grouped convolution per
# layer: an edit needs style gradients, not weight gradients, and this form skips the weight-gradient
# convolution (314 -> 224 GFLOP per step at 256 px) and oneDNN's slow grouped convolutions (README, Performance).
# Unmeasured on a GPU, so CUDA keeps NVIDIA's rule.
CPU_SYNTHESIS = SynthesisPrecision(num_fp16_res=0, fused_modconv=False)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision an edit runs at, and why (recorded in run.json's settings)."""

    name: str  # 'fp32', 'mixed' or 'bf16'
    reason: str


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without it oneDNN emulates bf16 and
    the 'bf16' path is slower than 'fp32' (docs: README, Performance)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def default_precision(device: Union[str, torch.device]) -> PrecisionChoice:
    """'mixed' on CUDA, where fp16 kernels are fast; on a CPU 'bf16' where it computes bfloat16 natively
    (measured 1.9x fp32's steps/s at 256 px with AVX512-BF16) and 'fp32' where it would emulate it."""
    if torch.device(device).type == "cuda":
        return PrecisionChoice("mixed", "default on CUDA: fp16 generator blocks and CLIP under autocast")
    if torch.device(device).type == "cpu" and native_bf16():
        return PrecisionChoice("bf16", "default on this CPU: it has native bfloat16 (AVX512-BF16 or AMX)")
    return PrecisionChoice("fp32", f"default on {torch.device(device).type}: no native bfloat16 (AVX512-BF16 or AMX) here")


def choose_precision(precision: Optional[str], device: Union[str, torch.device], offered: tuple[str, ...] = PRECISIONS) -> PrecisionChoice:
    """The precision to use on `device`: the device's default for None, else `precision` if it is among the caller's
    `offered` ones (embedding offers fp32 and bf16) and can run there."""
    if precision is None:
        return default_precision(device)
    if precision not in offered:
        raise SgsimError(f"unknown precision {precision!r}; choose one of {', '.join(offered)}")
    if precision == "mixed" and torch.device(device).type != "cuda":
        raise SgsimError(f"precision='mixed' runs fp16 kernels on CUDA, but the device is {device}; use 'fp32' or 'bf16'")
    if precision == "bf16" and torch.device(device).type == "cpu" and not native_bf16():
        warnings.warn("this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX): precision='bf16' is "
                      "emulated and slower than 'fp32' here", RuntimeWarning, stacklevel=3)
    return PrecisionChoice(precision, "asked for")


class AutocastImageEncoder:
    """A CLIP model whose image tower runs under autocast at `dtype` (fp16 matmuls, fp32 reductions), or with
    `dtype` None in fp32 even inside an autocast region; embeddings come back fp32."""

    def __init__(self, clip, dtype: Optional[torch.dtype] = torch.float16):
        self.clip = clip
        self.dtype = dtype

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=images.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return self.clip.encode_image(images if self.dtype else images.float()).float()


@contextmanager
def edit_precision(precision: str, generator, clip, synthesis: SynthesisPrecision = MIXED) -> Iterator[object]:
    """Within the block, `generator` runs at `precision`; yields the CLIP image encoder to use with it.

    'fp32' also keeps the fp16 blocks of a mixed-precision network (ADA's) in fp32. `synthesis` says how
    'mixed' runs the generator (MIXED: NVIDIA's num_fp16_res 4 and conv_clamp 256). 'bf16' runs the
    generator and the identity network under bfloat16 autocast (bf16 has fp32's range, so it needs neither
    fp16 blocks nor a clamp) and CLIP in fp32: a small part of a step, and on CPUs bf16 linear layers on
    MultiheadAttention's strided activations run about 100x slower than on contiguous ones (batch > 1).
    """
    device_type = next(generator.parameters()).device.type
    full = CPU_SYNTHESIS if device_type == "cpu" else FP32
    if precision == "mixed":
        with synthesis_precision(generator.synthesis, synthesis):
            yield AutocastImageEncoder(clip)
    elif precision == "bf16":
        with synthesis_precision(generator.synthesis, full), torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield AutocastImageEncoder(clip, None)
    else:
        with synthesis_precision(generator.synthesis, full):
            yield clip

