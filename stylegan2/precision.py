"""Run an already built synthesis network at another precision: fp16 in its highest-resolution blocks, clamped.

NVIDIA's ADA networks are trained this way (num_fp16_res 4, conv_clamp 256). A network trained in fp32
(FFHQ config-f) can run the same way for speed, at a small cost in accuracy that the tests bound.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from stylegan2.networks import FixedWeight, SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer, lowest_fp16_resolution


@dataclass(frozen=True)
class SynthesisPrecision:
    """How the synthesis blocks run: which of them in fp16, with which clamp, memory format and modulated convolution."""

    num_fp16_res: int | None  # fp16 for this many highest resolutions (on CUDA), 0 = every block in fp32, None = every block above 4 px
    conv_clamp: float | None = None  # clamp for layers the network built without one, None = leave them unclamped
    channels_last: bool = False  # channels_last activations in the fp16 blocks
    fp16_on_cpu: bool = False  # fp16 on the CPU too: slow, only to check fp16 numerics without a GPU
    # Modulated convolutions as one grouped convolution (True), by scaling activations (False, faster on CPUs,
    # whose grouped convolutions are slow), or by NVIDIA's rule (None: fused in inference unless fp16 with a batch).
    fused_modconv: bool | None = None
    # The reduced dtype: float16 as NVIDIA trains, or bfloat16 (needs no clamp; native on recent CPUs, and the
    # generator's CUDA kernels have no bf16 form, so bf16 blocks are for the CPU's reference ops).
    dtype: torch.dtype = torch.float16
    # The weights do not change within the block (an edit's loop): each modulated layer's weight is cast to its
    # block's dtype and its demodulation energy computed once, not in every forward pass.
    fixed_weights: bool = False


FP32 = SynthesisPrecision(num_fp16_res=0)
# stylegan2-ada-pytorch train.py: every configuration trains with num_fp16_res 4 and conv_clamp 256.
MIXED = SynthesisPrecision(num_fp16_res=4, conv_clamp=256)


def laid_out(weight: torch.Tensor, layer: SynthesisLayer, block: SynthesisBlock) -> torch.Tensor:
    """`weight` in the memory format of the block's activations, which each convolution would otherwise convert it
    to; for an upsampling layer such that the transposed convolution's [in, out, k, k] view of it is in that format."""
    if not (block.channels_last and weight.dtype != torch.float32):
        return weight
    if layer.up == 1:
        return weight.contiguous(memory_format=torch.channels_last)
    return weight.transpose(0, 1).contiguous(memory_format=torch.channels_last).transpose(0, 1)


@contextmanager
def synthesis_precision(synthesis: SynthesisNetwork, precision: SynthesisPrecision) -> Iterator[SynthesisNetwork]:
    """Within the block, `synthesis` runs at `precision`; its own settings come back afterwards, even on error.

    A StyleGAN3 synthesis network has no reduced-precision layers here: it stays as it is (fp32, or whatever an
    enclosing autocast region makes of its convolutions).
    """
    if not isinstance(synthesis, SynthesisNetwork):
        yield synthesis
        return
    saved: list[tuple[object, str, object]] = []

    def assign(module: object, name: str, value: object) -> None:
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    try:
        count = synthesis.img_resolution_log2 - 2 if precision.num_fp16_res is None else precision.num_fp16_res
        lowest = lowest_fp16_resolution(synthesis.img_resolution, count)
        assign(synthesis, "num_fp16_res", count)
        for res in synthesis.block_resolutions:
            block = getattr(synthesis, f"b{res}")
            half = res >= lowest
            assign(block, "use_fp16", half)
            assign(block, "channels_last", half and precision.channels_last)
            assign(block, "fp16_on_cpu", precision.fp16_on_cpu)
            assign(block, "fused_modconv", precision.fused_modconv)
            assign(block, "reduced_dtype", precision.dtype)
            for layer in block.modules():
                if isinstance(layer, (SynthesisLayer, ToRGBLayer)) and layer.conv_clamp is None:
                    assign(layer, "conv_clamp", precision.conv_clamp)
                if isinstance(layer, SynthesisLayer) and precision.fixed_weights:
                    with torch.no_grad():
                        weight = layer.weight.detach()
                        dtype = block.compute_dtype(weight.device)
                        assign(layer, "fixed", FixedWeight(laid_out(weight.to(dtype), layer, block), weight.square().sum(dim=[2, 3])))
        yield synthesis
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)
