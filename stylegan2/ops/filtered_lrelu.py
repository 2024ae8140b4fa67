"""Filtered leaky ReLU (StyleGAN3): bias, upsample + FIR, leaky ReLU with gain and clamp, FIR + downsample.

The nonlinearity runs at `up` times the input's sampling rate between two low-pass filters, so the
aliasing it creates is filtered out before the signal returns to its own rate (Karras et al. 2021, sec. 3.2).

Two paths: a pure-PyTorch reference (the CPU default), and on CUDA a kernel of sgsim's own
(cuda/filtered_lrelu.cu) that fuses bias, upsampling FIR, gain, leaky ReLU and clamp in one pass, followed by
upfirdn2d's CUDA kernel for the downsampling FIR. It is simpler than NVIDIA's fully fused kernel (the
upsampled activation is written once to memory); its gradients come from the reference path, recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.ops.bias_act import bias_act_ref
from stylegan2.ops.cuda_build import CudaPlugin, ExtensionSpec
from stylegan2.ops.upfirdn2d import Padding, _filter_size, _quad, upfirdn2d_cuda, upfirdn2d_ref

_PLUGIN = CudaPlugin(
    ExtensionSpec(
        name="sgsim_filtered_lrelu",
        sources=tuple(Path(__file__).parent / "cuda" / name for name in ("filtered_lrelu.cpp", "filtered_lrelu.cu")),
        headers=(Path(__file__).parent / "cuda" / "filtered_lrelu.h",),
    )
)


def output_size(in_w: int, in_h: int, fu: torch.Tensor | None, fd: torch.Tensor | None, up: int, down: int,
                padding: Padding) -> tuple[int, int]:
    """(width, height) of filtered_lrelu's output: each filter shrinks the padded upsampled image by its length - 1."""
    px0, px1, py0, py1 = _quad(padding)
    (fu_w, fu_h), (fd_w, fd_h) = _filter_size(fu), _filter_size(fd)
    out_w = (in_w * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + down - 1) // down
    out_h = (in_h * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down
    return out_w, out_h


def _check(x: torch.Tensor, b: torch.Tensor | None, up: int, down: int, gain: float, slope: float, clamp: float | None) -> None:
    if x.ndim != 4:
        raise NetworkConfigError(f"filtered_lrelu: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[1]):
        raise NetworkConfigError(f"filtered_lrelu: b must be a vector of {x.shape[1]} channels, got shape {tuple(b.shape)}")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise NetworkConfigError(f"filtered_lrelu: up={up!r} and down={down!r} must be integers >= 1")
    if not (gain > 0 and slope >= 0 and (clamp is None or clamp >= 0)):
        raise NetworkConfigError(f"filtered_lrelu: gain={gain} must be > 0, slope={slope} and clamp={clamp} >= 0")


def _check_output(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, up: int, down: int, padding: Padding) -> None:
    """Refuses a call whose padding and filters leave an empty image (both paths, before any work)."""
    out_w, out_h = output_size(x.shape[3], x.shape[2], fu, fd, up, down, padding)
    if out_w < 1 or out_h < 1:
        raise NetworkConfigError(f"filtered_lrelu: input {tuple(x.shape)} with padding {padding} leaves no output pixels")


def _upsample_axis(x: torch.Tensor, f: torch.Tensor, up: int, pad0: int, pad1: int, dim: int) -> torch.Tensor:
    """Zero insertion, padding and a 1-D FIR along `dim` (3 = x, 2 = y) as one strided transposed convolution: the
    taps that would meet inserted zeros are never multiplied. Transposed convolution computes z[j] = sum_i x[i] f[j - i up],
    the full convolution of the zero-inserted signal, whose sample n + taps - 1 - pad0 is output n."""
    taps, channels, length = f.numel(), x.shape[1], x.shape[dim]
    shape = [1, 1, 1, taps] if dim == 3 else [1, 1, taps, 1]
    weight = f.to(x.dtype).reshape(shape).expand(channels, *shape[1:])
    z = F.conv_transpose2d(x, weight, stride=(1, up) if dim == 3 else (up, 1), groups=channels)
    start, size = taps - 1 - pad0, length * up + pad0 + pad1 - taps + 1
    z = z.narrow(dim, max(start, 0), min(z.shape[dim] - max(start, 0), size + min(start, 0)))
    missing = [max(-start, 0), size - z.shape[dim] - max(-start, 0)]
    if missing != [0, 0]:  # padding beyond the filter's reach: zeros (negative padding was cropped above)
        z = F.pad(z, missing + [0, 0] if dim == 3 else [0, 0] + missing)
    return z


def _upsample(x: torch.Tensor, f: torch.Tensor | None, up: int, padding: tuple[int, int, int, int], gain: float,
              flip_filter: bool) -> torch.Tensor:
    """upfirdn2d_ref(x, f, up=up, padding=padding, gain=gain): separable filters polyphase, one axis at a time."""
    if f is None or f.ndim != 1 or up == 1:
        return upfirdn2d_ref(x, f, up=up, padding=padding, gain=gain, flip_filter=flip_filter)
    f = f * math.sqrt(gain)  # the same filter on each axis: each carries the square root of the gain
    f = f.flip(0) if flip_filter else f  # a transposed convolution applies taps as an FIR does; correlation reverses them
    px0, px1, py0, py1 = padding
    return _upsample_axis(_upsample_axis(x, f, up, px0, px1, 3), f, up, py0, py1, 2)


def filtered_lrelu_ref(
    x: torch.Tensor,                    # Input [batch_size, channels, in_height, in_width].
    fu: torch.Tensor | None = None,     # Upsampling FIR filter: [taps] (separable), [h, w], or None (identity).
    fd: torch.Tensor | None = None,     # Downsampling FIR filter, same forms.
    b: torch.Tensor | None = None,      # Per-channel bias added first, or None.
    up: int = 1,                        # Upsampling factor (zero insertion).
    down: int = 1,                      # Downsampling factor (keep every down-th sample).
    padding: Padding = 0,               # Padding of the upsampled image: int, [x, y] or [x0, x1, y0, y1]; negative crops.
    gain: float = math.sqrt(2),         # Scale after the upsampling filter, before the leaky ReLU.
    slope: float = 0.2,                 # Slope of the leaky ReLU below zero.
    clamp: float | None = None,         # Clamp the activation to [-clamp, clamp], None = no clamp.
    flip_filter: bool = False,          # False = convolution, True = correlation.
) -> torch.Tensor:
    """Reference path in plain PyTorch ops (autograd gives every derivative). The upsampling is polyphase for
    separable filters, and the gain rides on the upsampling filter (a leaky ReLU commutes with a positive scale)."""
    _check(x, b, up, down, gain, slope, clamp)
    _check_output(x, fu, fd, up, down, padding)
    if b is not None:
        x = bias_act_ref(x, b.to(x.dtype))
    # Zero insertion divides the DC level by up^2; the filter's gain restores it.
    x = _upsample(x, fu, up, _quad(padding), up**2 * gain, flip_filter)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d_ref(x, fd, down=down, flip_filter=flip_filter)


@dataclass(frozen=True)
class _Args:
    """The non-tensor arguments of one filtered_lrelu call."""

    up: int
    down: int
    padding: tuple[int, int, int, int]
    gain: float
    slope: float
    clamp: float | None
    flip_filter: bool


def _as_2d(f: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """The kernel takes 2-D filters: a separable one becomes its outer product, None the 1x1 identity."""
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=device)
    f = f.to(device=device, dtype=torch.float32)
    return (torch.outer(f, f) if f.ndim == 1 else f).contiguous()


class _FilteredLreluCuda(torch.autograd.Function):
    """Forward by the kernels; backward by autograd through the reference path (recomputed), to any order."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor | None, fu: torch.Tensor | None, fd: torch.Tensor | None, args: _Args):
        ctx.save_for_backward(x, b, fu, fd)
        ctx.args = args
        bias = b.to(x.dtype).contiguous() if b is not None else x.new_empty([0])
        clamp = -1.0 if args.clamp is None else float(args.clamp)
        y = _PLUGIN.load().filtered_lrelu_up(x.contiguous(), bias, _as_2d(fu, x.device), args.up, *args.padding,
                                             args.flip_filter, float(args.up**2 * args.gain), float(args.slope), clamp)
        if fd is None and args.down == 1:
            return y
        return upfirdn2d_cuda(y, _as_2d(fd, x.device), down=args.down, flip_filter=args.flip_filter)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, b, fu, fd = ctx.saved_tensors
        a = ctx.args
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_(ctx.needs_input_grad[0])]
            if b is not None:
                inputs.append(b.detach().requires_grad_(ctx.needs_input_grad[1]))
            y = filtered_lrelu_ref(inputs[0], fu, fd, inputs[1] if b is not None else None, a.up, a.down, a.padding,
                                   a.gain, a.slope, a.clamp, a.flip_filter)
            wanted = [t for t in inputs if t.requires_grad]
            grads = iter(torch.autograd.grad(y, wanted, dy, create_graph=torch.is_grad_enabled()))
        dx = next(grads) if inputs[0].requires_grad else None
        db = next(grads) if b is not None and inputs[1].requires_grad else None
        return dx, db, None, None, None


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """y = down(fd * clamp(lrelu(gain * (fu * up(x + b))))); arguments as in filtered_lrelu_ref.

    impl None picks the CUDA path for CUDA tensors when it is available, else the reference. The CUDA path is the fused
    upsampling kernel, then upfirdn2d's kernel; its filters get no gradient.
    """
    if _PLUGIN.choose(x, impl) == "ref":
        return filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
    _check(x, b, up, down, gain, slope, clamp)
    if not x.is_cuda:
        raise CudaOpsError(f"filtered_lrelu: impl='cuda' needs a CUDA tensor, got one on {x.device}; use impl=None or 'ref'")
    if _PLUGIN.load() is None:
        raise CudaOpsError("filtered_lrelu: the CUDA kernel is unavailable (see the warning above); use impl='ref' or fix the CUDA toolchain")
    if any(f is not None and f.requires_grad for f in (fu, fd)):
        raise NetworkConfigError("filtered_lrelu: the CUDA path gives no gradient to the filters; use impl='ref'")
    _check_output(x, fu, fd, up, down, padding)
    args = _Args(up, down, _quad(padding), float(gain), float(slope), None if clamp is None else float(clamp), bool(flip_filter))
    return _FilteredLreluCuda.apply(x, b, fu, fd, args)
