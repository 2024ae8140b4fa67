"""The edit loop's precision: 'fp32' everywhere; 'mixed' (fp16 high-resolution generator blocks, CLIP under
autocast) on CUDA; or 'bf16' (generator and identity network under bfloat16 autocast) on any device.

The reduced precisions trade a bounded loss of accuracy for speed: the generator's images of the same
latents stay within 35 dB PSNR of fp32's (docs/reference.md#performance-targets; the bounds live in tests/sgsim/test_precision.py, 'mixed' on a GPU only).
Only the optimisation runs reduced: the images an edit returns are rendered in fp32.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch

from stylegan2.precision import FP32, MIXED, SynthesisPrecision, synthesis_precision

# On a CPU the modulated convolutions scale activations instead of running one grouped convolution per
# layer: an edit needs style gradients, not weight gradients, and this form skips the weight-gradient
# convolution (314 -> 224 GFLOP per step at 256 px) and oneDNN's slow grouped convolutions (README, Performance).
# Unmeasured on a GPU, so CUDA keeps NVIDIA's rule.
CPU_SYNTHESIS = SynthesisPrecision(num_fp16_res=0, fused_modconv=False)


class AutocastImageEncoder:
    """A CLIP model whose image tower runs under autocast at `dtype` (fp16 matmuls, fp32 reductions), or with
    `dtype` None in fp32 even inside an autocast region; embeddings come back fp32. `per_sample` encodes one
    image at a time: on CPUs, bf16 linear layers on MultiheadAttention's strided activations (any batch above
    1) run about 8x slower than on the contiguous ones of a single image."""

    def __init__(self, clip, dtype: Optional[torch.dtype] = torch.float16, per_sample: bool = False):
        self.clip = clip
        self.dtype = dtype
        self.per_sample = per_sample

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=images.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            images = images if self.dtype else images.float()
            if self.per_sample:
                return torch.cat([self.clip.encode_image(image[None]).float() for image in images])
            return self.clip.encode_image(images).float()


@contextmanager
def edit_precision(precision: str, generator, clip, synthesis: SynthesisPrecision = MIXED) -> Iterator[object]:
    """Within the block, `generator` runs at `precision`; yields the CLIP image encoder to use with it.

    'fp32' also keeps the fp16 blocks of a mixed-precision network (ADA's) in fp32. `synthesis` says how
    'mixed' runs the generator (MIXED: NVIDIA's num_fp16_res 4 and conv_clamp 256). 'bf16' runs the
    generator, the identity network and CLIP's image tower under bfloat16 autocast (bf16 has fp32's range,
    so it needs neither fp16 blocks nor a clamp); on the CPU CLIP sees one image at a time (contiguous
    activations), where bf16 halves its 0.35 s share of a 256 px step.
    """
    device_type = next(generator.parameters()).device.type
    full = CPU_SYNTHESIS if device_type == "cpu" else FP32
    if precision == "mixed":
        with synthesis_precision(generator.synthesis, synthesis):
            yield AutocastImageEncoder(clip)
    elif precision == "bf16":
        with synthesis_precision(generator.synthesis, full), torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield AutocastImageEncoder(clip, torch.bfloat16, per_sample=device_type == "cpu")
    else:
        with synthesis_precision(generator.synthesis, full):
            yield clip

