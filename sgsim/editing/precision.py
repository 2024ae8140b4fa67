"""The edit loop's precision: 'fp32' everywhere; 'mixed' (fp16 high-resolution generator blocks, CLIP under
autocast) on CUDA; or 'bf16' (generator in bfloat16, CLIP and the loss networks under bfloat16 autocast) on any device.

The reduced precisions trade a bounded loss of accuracy for speed: the generator's images of the same
latents stay within 35 dB PSNR of fp32's (docs/reference.md#performance-targets; the bounds live in tests/sgsim/test_precision.py, 'mixed' on a GPU only).
Only the optimisation runs reduced: the images an edit returns are rendered in fp32.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from typing import Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from stylegan2.precision import FP32, MIXED, SynthesisPrecision, synthesis_precision

# The documented tolerance of the reduced precisions (docs/reference.md#performance-targets): the generator's
# images of the same latents within RENDER_MIN_PSNR_DB of fp32's. Whole edits: 300 Adam steps amplify any
# rounding (at 256 px, fp32 edits toward targets 1 % apart end 28 dB apart), so a reduced-precision edit must
# be within RENDER_MIN_PSNR_DB of the fp32 edit of the same inputs, or at most EDIT_MARGIN_DB farther from it
# than an fp32 edit toward targets moved by TARGET_NUDGE (nudge_targets), and reach the same final CLIP loss
# within EDIT_MAX_CLIP_LOSS_DIFF. Checked by tests/sgsim/test_precision.py and scripts/bench_edit.py --tolerance.
RENDER_MIN_PSNR_DB = 35.0
TARGET_NUDGE = 0.01
EDIT_MARGIN_DB = 3.0
EDIT_MAX_CLIP_LOSS_DIFF = 0.01


def image_psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB between two batches of generator images in [-1, 1] (clamped first; peak-to-peak 2), over all
    pixels: the distance the tolerance is stated in."""
    error = (images.float().clamp(-1, 1) - reference.float().clamp(-1, 1)).square().mean().item()
    return float("inf") if error == 0 else 10.0 * math.log10(4.0 / error)


def nudge_targets(targets: torch.Tensor, seed: int, size: float = TARGET_NUDGE) -> torch.Tensor:
    """Unit target embeddings [N, D] each moved by a random vector of norm `size`, renormalised."""
    noise = torch.randn(targets.shape, generator=torch.Generator().manual_seed(seed)).to(targets.device)
    return F.normalize(targets + size * F.normalize(noise, dim=-1), dim=-1)


# On a CPU the modulated convolutions scale activations instead of running one grouped convolution per
# layer: an edit needs style gradients, not weight gradients, and this form skips the weight-gradient
# convolution (314 -> 224 GFLOP per step at 256 px) and oneDNN's slow grouped convolutions (docs/performance.md#what-bought-it).
# Unmeasured on a GPU, so CUDA keeps NVIDIA's rule.
CPU_SYNTHESIS = SynthesisPrecision(num_fp16_res=0, fused_modconv=False, fixed_weights=True)


# A bf16 edit's generator on a CPU: every block above 4 px computes in bfloat16 itself, so that the elementwise work
# between its convolutions runs on half the bytes (autocast would round only each convolution's input and leave that
# work in fp32), with the modulated convolutions unfused as in CPU_SYNTHESIS. A StyleGAN3 network has no such blocks
# (synthesis_precision leaves it as it is): it stays in fp32, its convolutions under the edit's autocast.
CPU_BF16_SYNTHESIS = SynthesisPrecision(num_fp16_res=None, channels_last=True, fused_modconv=False, dtype=torch.bfloat16,
                                        fixed_weights=True)


# The layers whose weights autocast casts at every call: matrices and kernels of linear layers, convolutions and
# attention in-projections (biases, norms and embeddings are small or stay fp32 under autocast).
_CAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention)


@contextmanager
def frozen_weights_in(dtype: torch.dtype, modules: Iterable[nn.Module]) -> Iterator[None]:
    """Within the block, the frozen fp32 weights of the linear, convolution and attention layers of `modules` are
    held in `dtype`; afterwards the fp32 ones come back. Autocast caches only the casts of weights that require a
    gradient and casts frozen ones again at every call (a bf16 step recast CLIP's and ArcFace's weights, 130M
    numbers, every time): with this they are cast once per edit, to the same values."""
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for module in modules:
            for layer in module.modules():
                if not isinstance(layer, _CAST_LAYERS):
                    continue
                for name in ("weight", "in_proj_weight"):
                    weight = getattr(layer, name, None)
                    if isinstance(weight, torch.Tensor) and weight.dtype == torch.float32 and not weight.requires_grad:
                        saved.append((weight, weight.data))
                        weight.data = weight.data.to(dtype)
        yield
    finally:
        for weight, data in reversed(saved):
            weight.data = data


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
def edit_precision(precision: str, generator, clip, synthesis: SynthesisPrecision = MIXED,
                   helpers: Iterable[object] = ()) -> Iterator[object]:
    """Within the block, `generator` runs at `precision`; yields the CLIP image encoder to use with it.

    'fp32' also keeps the fp16 blocks of a mixed-precision network (ADA's) in fp32. `synthesis` says how
    'mixed' runs the generator (MIXED: NVIDIA's num_fp16_res 4 and conv_clamp 256). 'bf16' runs the
    generator in bfloat16 (bf16 has fp32's range, so it needs no clamp; on the CPU its blocks compute in bf16
    themselves, elsewhere under autocast), CLIP's image tower and the `helpers` (the loss terms' networks:
    identity, LPIPS) under bfloat16 autocast, with their weights cast once (frozen_weights_in); on the CPU
    CLIP sees one image at a time (contiguous activations), where bf16 halves its 0.35 s share of a 256 px step.
    """
    device_type = next(generator.parameters()).device.type
    full = CPU_SYNTHESIS if device_type == "cpu" else FP32
    if precision == "mixed":
        with synthesis_precision(generator.synthesis, synthesis):
            yield AutocastImageEncoder(clip)
    elif precision == "bf16":
        blocks = CPU_BF16_SYNTHESIS if device_type == "cpu" else full
        cast = [clip.model.visual, *(helper for helper in helpers if isinstance(helper, nn.Module))]
        with ExitStack() as stack:
            stack.enter_context(synthesis_precision(generator.synthesis, blocks))
            stack.enter_context(frozen_weights_in(torch.bfloat16, cast))
            stack.enter_context(torch.autocast(device_type=device_type, dtype=torch.bfloat16))
            yield AutocastImageEncoder(clip, torch.bfloat16, per_sample=device_type == "cpu")
    else:
        with synthesis_precision(generator.synthesis, full):
            yield clip

