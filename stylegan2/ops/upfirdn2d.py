"""Upsample, pad, FIR-filter and downsample 2-D images: a pure-PyTorch reference and a CUDA kernel."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.ops.cuda_build import CudaPlugin, ExtensionSpec

_PLUGIN = CudaPlugin(
    ExtensionSpec(
        name="sgsim_upfirdn2d",
        sources=tuple(Path(__file__).parent / "cuda" / name for name in ("upfirdn2d.cpp", "upfirdn2d.cu")),
        headers=(Path(__file__).parent / "cuda" / "upfirdn2d.h",),
    )
)

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


def _pair(value: Scaling, what: str) -> tuple[int, int]:
    """An int or [x, y] as (x, y), each >= 1."""
    sx, sy = (value, value) if isinstance(value, int) else tuple(value)
    if sx < 1 or sy < 1:
        raise NetworkConfigError(f"upfirdn2d: {what}={value!r} must be >= 1")
    return int(sx), int(sy)


def _quad(padding: Padding) -> tuple[int, int, int, int]:
    """An int, [x, y] or [x0, x1, y0, y1] as (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) == 4:
        return tuple(padding)
    raise NetworkConfigError(f"upfirdn2d: padding={padding!r} must be an int, [x, y] or [x0, x1, y0, y1]")


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a 2-D or separable 1-D filter."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise NetworkConfigError(f"upfirdn2d: the filter must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}")
    return f.shape[-1], f.shape[0]


def setup_filter(
    f: Sequence[float] | torch.Tensor | float | None,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A float32 FIR filter ready for upfirdn2d: 1-D taps become their outer product unless separable.

    Long 1-D filters (>= 8 taps) stay separable by default, as in NVIDIA's StyleGAN2 ops; the gain is
    spread over the filter's dimensions so that the 2-D response is scaled by `gain` in total.
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim > 2 or f.numel() == 0:
        raise NetworkConfigError(f"setup_filter: expected a non-empty 0-, 1- or 2-D filter, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise NetworkConfigError("setup_filter: separable=True needs a 1-D filter")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


@dataclass(frozen=True)
class Geometry:
    """Every non-tensor argument of one upfirdn2d call, normalised."""

    up: tuple[int, int]
    down: tuple[int, int]
    padding: tuple[int, int, int, int]
    flip_filter: bool
    gain: float

    def output_size(self, in_w: int, in_h: int, f_w: int, f_h: int) -> tuple[int, int]:
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = self.up, self.down, self.padding
        return (in_w * upx + px0 + px1 - f_w) // downx + 1, (in_h * upy + py0 + py1 - f_h) // downy + 1

    def adjoint(self, in_w: int, in_h: int, out_w: int, out_h: int, f_w: int, f_h: int) -> "Geometry":
        """The geometry whose upfirdn2d is the transpose (gradient) of this one.

        Per axis: an output sample o reads padded-upsampled position o*down + k with tap k; the
        transpose zero-inserts dy with factor `down`, reads with the reversed filter, and chooses its
        padding so that the taps line up (left: f - p0 - 1) and the output has exactly the input length.
        """
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = self.up, self.down, self.padding
        padding = (
            f_w - px0 - 1,
            in_w * upx - out_w * downx + px0 - upx + 1,
            f_h - py0 - 1,
            in_h * upy - out_h * downy + py0 - upy + 1,
        )
        return Geometry(self.down, self.up, padding, not self.flip_filter, self.gain)


def _geometry(up: Scaling, down: Scaling, padding: Padding, flip_filter: bool, gain: float) -> Geometry:
    return Geometry(_pair(up, "up"), _pair(down, "down"), _quad(padding), bool(flip_filter), float(gain))


def _check_input(x: torch.Tensor, f: torch.Tensor | None, geometry: Geometry) -> None:
    if x.ndim != 4:
        raise NetworkConfigError(f"upfirdn2d: x must be [N, C, H, W], got shape {tuple(x.shape)}")
    f_w, f_h = _filter_size(f)
    out_w, out_h = geometry.output_size(x.shape[3], x.shape[2], f_w, f_h)
    if out_w < 1 or out_h < 1:
        raise NetworkConfigError(f"upfirdn2d: input {tuple(x.shape)} with filter {f_w}x{f_h} and {geometry} leaves no output pixels")


def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor | None, g: Geometry) -> torch.Tensor:
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = g.up, g.down, g.padding
    n, c, h, w = x.shape
    # F.pad copies even when it pads nothing, so both steps are skipped when they would change nothing.
    if (upx, upy) != (1, 1):  # zero insertion: each sample is followed by up-1 zeros along each axis
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    # Positive padding pads with zeros, negative padding crops. Padding that is the same on both sides of each
    # axis is left to the convolution, which pads without a padded copy of the activation.
    symmetric = px0 == px1 >= 0 and py0 == py1 >= 0
    pad = (py0, px0) if symmetric else (0, 0)
    if not symmetric:
        if max(px0, px1, py0, py1) > 0:
            x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = (f * (g.gain ** (f.ndim / 2))).to(x.dtype)
    if not g.flip_filter:  # conv2d correlates; an FIR filter convolves
        f = f.flip(list(range(f.ndim)))
    # Downsampling strides the filter: only the kept outputs are computed.
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), stride=(downy, downx), padding=pad, groups=c)
    taps = f[None, None].repeat(c, 1, 1)
    x = F.conv2d(x, taps.unsqueeze(2), stride=(1, downx), padding=(0, pad[1]), groups=c)
    return F.conv2d(x, taps.unsqueeze(3), stride=(downy, 1), padding=(pad[0], 0), groups=c)


def upfirdn2d_ref(
    x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 1, down: Scaling = 1, padding: Padding = 0, flip_filter: bool = False, gain: float = 1
) -> torch.Tensor:
    """Reference path in plain PyTorch ops (zero insertion, pad/crop, depthwise conv2d, stride); autograd gives derivatives."""
    geometry = _geometry(up, down, padding, flip_filter, gain)
    _check_input(x, f, geometry)
    return _upfirdn2d_ref(x, f, geometry)


def _run_kernel(x: torch.Tensor, f: torch.Tensor, g: Geometry) -> torch.Tensor:
    plugin = _PLUGIN.load()
    x = x.contiguous()
    if f.ndim == 2:
        return plugin.upfirdn2d(x, f, *g.up, *g.down, *g.padding, g.flip_filter, g.gain)
    # Separable filter: a horizontal pass, then a vertical one, each carrying sqrt(gain).
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = g.up, g.down, g.padding
    half_gain = math.sqrt(g.gain)
    x = plugin.upfirdn2d(x, f[None, :], upx, 1, downx, 1, px0, px1, 0, 0, g.flip_filter, half_gain)
    return plugin.upfirdn2d(x, f[:, None].contiguous(), 1, upy, 1, downy, 0, 0, py0, py1, g.flip_filter, half_gain)


class _Upfirdn2dCuda(torch.autograd.Function):
    """The kernel is linear in x, so its gradient is the kernel again with the adjoint geometry (any order)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, g: Geometry) -> torch.Tensor:
        y = _run_kernel(x, f, g)
        ctx.save_for_backward(f)
        ctx.geometry = g
        ctx.in_size = (x.shape[3], x.shape[2])
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (f,) = ctx.saved_tensors
        f_w, f_h = _filter_size(f)
        adjoint = ctx.geometry.adjoint(*ctx.in_size, dy.shape[3], dy.shape[2], f_w, f_h)
        return _Upfirdn2dCuda.apply(dy, f, adjoint), None, None


def upfirdn2d_cuda(
    x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 1, down: Scaling = 1, padding: Padding = 0, flip_filter: bool = False, gain: float = 1
) -> torch.Tensor:
    """CUDA path: one direct FIR kernel (two passes for a separable filter); the filter gets no gradient."""
    geometry = _geometry(up, down, padding, flip_filter, gain)
    _check_input(x, f, geometry)
    if not x.is_cuda:
        raise CudaOpsError(f"upfirdn2d: impl='cuda' needs a CUDA tensor, got one on {x.device}; use impl=None or 'ref'")
    if _PLUGIN.load() is None:
        raise CudaOpsError("upfirdn2d: the CUDA kernel is unavailable (see the warning above); use impl='ref' or fix the CUDA toolchain")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.requires_grad:
        raise NetworkConfigError("upfirdn2d: the CUDA path gives no gradient to the filter; pass a filter that does not require grad or use impl='ref'")
    return _Upfirdn2dCuda.apply(x, f.to(device=x.device, dtype=torch.float32).contiguous(), geometry)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample x [N, C, H, W] by zero insertion, pad (negative = crop), convolve with the FIR filter f, then downsample.

    padding is int, [x, y] or [x0, x1, y0, y1], applied to the upsampled image; f comes from setup_filter.
    impl None picks the CUDA kernel for CUDA tensors when it is available, else the reference.
    """
    path = upfirdn2d_ref if _PLUGIN.choose(x, impl) == "ref" else upfirdn2d_cuda
    return path(x, f, up, down, padding, flip_filter, gain)


def upsample2d(
    x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 2, padding: Padding = 0, flip_filter: bool = False, gain: float = 1, impl: str | None = None
) -> torch.Tensor:
    """Upsample by `up` with FIR filtering; the padding keeps the image centred and the DC gain equal to `gain`."""
    upx, upy = _pair(up, "up")
    px0, px1, py0, py1 = _quad(padding)
    f_w, f_h = _filter_size(f)
    p = [px0 + (f_w + upx - 1) // 2, px1 + (f_w - upx) // 2, py0 + (f_h + upy - 1) // 2, py1 + (f_h - upy) // 2]
    # Zero insertion divides the DC level by upx*upy; the gain restores it.
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)

