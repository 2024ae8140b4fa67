"""Fused bias + activation + gain + clamp: a pure-PyTorch reference and a CUDA kernel with its own derivatives."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.ops.cuda_build import CudaPlugin, ExtensionSpec


@dataclass(frozen=True)
class Activation:
    """One activation: its function, default alpha and gain, and its index in the CUDA kernel's switch."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    kernel_index: int  # must match the ActivationKind enum in cuda/bias_act.cu
    has_2nd_grad: bool  # False where the second derivative is zero almost everywhere
    homogeneous: bool = False  # func(g * x) = g * func(x) for every g > 0, so a gain may be applied before it


# Default gains keep the signal's second moment near 1 (He et al. 2015); NVIDIA's StyleGAN2 uses the same values.
ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0, 1, False, homogeneous=True),
    "relu": Activation(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2), 2, False, homogeneous=True),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2), 3, False, homogeneous=True),
    "tanh": Activation(lambda x, alpha: torch.tanh(x), 0.0, 1.0, 4, True),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, 5, True),
    "elu": Activation(lambda x, alpha: F.elu(x), 0.0, 1.0, 6, True),
    "selu": Activation(lambda x, alpha: F.selu(x), 0.0, 1.0, 7, True),
    "softplus": Activation(lambda x, alpha: F.softplus(x), 0.0, 1.0, 8, True),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9, True),
}

_PLUGIN = CudaPlugin(
    ExtensionSpec(
        name="sgsim_bias_act",
        sources=tuple(Path(__file__).parent / "cuda" / name for name in ("bias_act.cpp", "bias_act.cu")),
        headers=(Path(__file__).parent / "cuda" / "bias_act.h",),
    )
)


@dataclass(frozen=True)
class _KernelArgs:
    """The non-tensor arguments of one bias_act call, as the CUDA kernel takes them."""

    dim: int
    act: Activation
    alpha: float
    gain: float
    clamp: float  # negative = no clamp


def _resolve(act: str, alpha: float | None, gain: float | None, clamp: float | None) -> tuple[Activation, float, float, float]:
    if act not in ACTIVATIONS:
        raise NetworkConfigError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    return spec, alpha, gain, clamp


def _check_bias(x: torch.Tensor, b: torch.Tensor | None, dim: int) -> None:
    if b is None:
        return
    if not 0 <= dim < x.ndim:
        raise NetworkConfigError(f"bias_act: dim={dim} is outside the {x.ndim} dimensions of x")
    if b.ndim != 1 or b.shape[0] != x.shape[dim]:
        raise NetworkConfigError(f"bias_act: bias of shape {tuple(b.shape)} does not match x.shape[{dim}] = {x.shape[dim]}")


def bias_act_ref(
    x: torch.Tensor,                    # Input of any shape.
    b: torch.Tensor | None = None,      # Bias vector added along `dim`, or None.
    dim: int = 1,                       # The dimension of x the bias runs along.
    act: str = "linear",                # Activation, a name in ACTIVATIONS.
    alpha: float | None = None,         # The activation's shape parameter (leaky ReLU slope), None = its default.
    gain: float | None = None,          # Scale after the activation, None = the activation's default gain.
    clamp: float | None = None,         # Clamp the output to [-clamp, clamp], None = no clamp.
) -> torch.Tensor:
    """Reference path in plain PyTorch ops; autograd gives every derivative."""
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    _check_bias(x, b, dim)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _kernel(x: torch.Tensor, b: torch.Tensor | None, dy: torch.Tensor | None, ddx: torch.Tensor | None, mode: int, args: _KernelArgs) -> torch.Tensor:
    """mode 0: y = f(x + b); 1: dy * f'(x + b); 2: ddx * dy * f''(x + b) (gain and clamp mask included)."""
    empty = x.new_empty([0])
    return _PLUGIN.load().bias_act(
        x, empty if b is None else b, empty if dy is None else dy, empty if ddx is None else ddx,
        mode, args.act.kernel_index, args.alpha, args.gain, args.clamp, args.dim,
    )


def _reduce_to_bias(grad: torch.Tensor, b: torch.Tensor | None, dim: int) -> torch.Tensor | None:
    if b is None or grad is None:
        return None
    return grad.sum([i for i in range(grad.ndim) if i != dim])


def _dense(x: torch.Tensor) -> torch.Tensor:
    """The kernel indexes the bias through the stride of `dim`, which needs a dense layout (contiguous or channels-last)."""
    if x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def _same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gradients may arrive in any layout; the kernel walks them with the strides of x."""
    memory_format = torch.contiguous_format if like.is_contiguous() else torch.channels_last
    return t.contiguous(memory_format=memory_format)


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor | None, args: _KernelArgs) -> torch.Tensor:
        x = _dense(x)
        ctx.save_for_backward(x, b)
        ctx.args = args
        return _kernel(x, b, None, None, 0, args)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, b = ctx.saved_tensors
        dx = _BiasActCudaGrad.apply(_same_layout(dy, x), x, b, ctx.args)
        return dx, _reduce_to_bias(dx, b, ctx.args.dim), None


class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * f'(x + b); its own backward gives the second derivatives."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, x: torch.Tensor, b: torch.Tensor | None, args: _KernelArgs) -> torch.Tensor:
        ctx.save_for_backward(dy, x, b)
        ctx.args = args
        return _kernel(x, b, dy, None, 1, args)

    @staticmethod
    def backward(ctx, d_dx: torch.Tensor):
        dy, x, b = ctx.saved_tensors
        args = ctx.args
        d_dx = _same_layout(d_dx, x)
        d_dy = _BiasActCudaGrad.apply(d_dx, x, b, args)  # dx is linear in dy
        d_x = _kernel(x, b, dy, d_dx, 2, args) if args.act.has_2nd_grad else None
        return d_dy, d_x, _reduce_to_bias(d_x, b, args.dim), None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """y = clamp(act(x + b, alpha) * gain, -clamp, clamp), with b broadcast along `dim`; arguments as in bias_act_ref.

    impl None picks the CUDA path for CUDA tensors when it is available, else the reference. The CUDA path is one
    elementwise kernel, with first and second derivatives as kernels too.
    """
    if _PLUGIN.choose(x, impl) == "ref":
        return bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    _check_bias(x, b, dim)
    if not x.is_cuda:
        raise CudaOpsError(f"bias_act: impl='cuda' needs a CUDA tensor, got one on {x.device}; use impl=None or 'ref'")
    if _PLUGIN.load() is None:
        raise CudaOpsError("bias_act: the CUDA kernel is unavailable (see the warning above); use impl='ref' or fix the CUDA toolchain")
    if b is not None:
        b = b.to(x.dtype).contiguous()
    return _BiasActCuda.apply(x, b, _KernelArgs(dim if b is not None else 0, spec, alpha, gain, clamp))
