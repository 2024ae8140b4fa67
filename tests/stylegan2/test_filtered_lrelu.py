"""filtered_lrelu: the reference path against a direct implementation of its definition (values and gradients),
its checks, and the CUDA path against the reference on a GPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.networks_stylegan3 import design_lowpass_filter
from stylegan2.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_ref


def convolve_taps(x: torch.Tensor, f: torch.Tensor, flip_filter: bool) -> torch.Tensor:
    """'valid' 2-D convolution (correlation if flip_filter) written out tap by tap: y[i, j] = sum f[a, b] x[i + .., j + ..]."""
    f2 = torch.outer(f, f) if f.ndim == 1 else f
    kh, kw = f2.shape
    out_h, out_w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = x.new_zeros([*x.shape[:2], out_h, out_w])
    for a in range(kh):
        for b in range(kw):
            tap = f2[a, b] if flip_filter else f2[kh - 1 - a, kw - 1 - b]
            y = y + tap * x[:, :, a:a + out_h, b:b + out_w]
    return y


def by_definition(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter=False):
    """The nine steps of NVIDIA's docstring, one by one, in float64."""
    x = x + b.reshape(1, -1, 1, 1)  # 1. bias
    n, c, h, w = x.shape
    u = x.new_zeros([n, c, h * up, w * up])
    u[:, :, ::up, ::up] = x  # 2. zero insertion: up - 1 zeros after each sample
    u = F.pad(u, list(padding))  # 3. pad (negative crops)
    if fu is not None:
        u = convolve_taps(u, fu, flip_filter) * up**2  # 4. upsampling FIR, DC gain restored
    u = u * gain  # 5. gain
    u = torch.where(u >= 0, u, u * slope)  # 6. leaky ReLU
    if clamp is not None:
        u = u.clamp(-clamp, clamp)  # 7. clamp
    if fd is not None:
        u = convolve_taps(u, fd, flip_filter)  # 8. downsampling FIR
    return u[:, :, ::down, ::down]  # 9. keep every down-th sample


def lowpass(taps: int, cutoff: float, fs: float, radial: bool = False) -> torch.Tensor:
    return design_lowpass_filter(taps, cutoff, cutoff, fs, radial=radial).double()


CASES = {  # name: (fu, fd, up, down, padding [x0, x1, y0, y1], gain, slope, clamp, flip)
    "up2-down2": (lambda: lowpass(12, 3, 16), lambda: lowpass(12, 3, 16), 2, 2, (7, 6, 7, 6), math.sqrt(2), 0.2, None, False),
    "up4-down2-clamped": (lambda: lowpass(24, 2, 32), lambda: lowpass(12, 3, 32), 4, 2, (10, 9, 11, 8), math.sqrt(2), 0.2, 0.4, False),
    "radial-down": (lambda: lowpass(12, 3, 16), lambda: lowpass(12, 3, 16, radial=True), 2, 2, (7, 6, 7, 6), math.sqrt(2), 0.2, None, False),
    "critically-sampled-crop": (lambda: lowpass(6, 2, 8), None, 2, 1, (-1, -2, -2, -1), math.sqrt(2), 0.2, 1.0, False),
    "torgb-identity": (None, None, 1, 1, (0, 0, 0, 0), 1.0, 1.0, 256.0, False),
    "asymmetric-correlation": (lambda: torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64), lambda: torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
                               3, 2, (2, 1, 0, 3), 0.7, 0.1, None, True),
    # Polyphase upsampling with padding beyond the filter's reach on one side and cropping on the other.
    "separable-correlation-wide-pad": (lambda: torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64), None,
                                       3, 1, (5, -2, 9, 2), 1.3, 0.3, 2.0, True),
}


def make_inputs(seed: int, channels: int = 3, size: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn([2, channels, size, size + 1], generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn([channels], generator=g, dtype=torch.float64)
    return x, b


@pytest.mark.parametrize("name", list(CASES))
def test_reference_equals_the_definition(name):
    fu, fd, up, down, padding, gain, slope, clamp, flip = CASES[name]
    fu, fd = (f() if f else None for f in (fu, fd))
    x, b = make_inputs(1)
    expected = by_definition(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip)
    got = filtered_lrelu_ref(x, fu, fd, b, up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp, flip_filter=flip)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)  # float64: rounding of a few hundred terms


@pytest.mark.parametrize("name", list(CASES))
def test_reference_gradients_equal_the_definitions(name):
    fu, fd, up, down, padding, gain, slope, clamp, flip = CASES[name]
    fu, fd = (f() if f else None for f in (fu, fd))
    grads = []
    for path in (by_definition, filtered_lrelu_ref):
        x, b = make_inputs(2)
        x.requires_grad_(True)
        b.requires_grad_(True)
        y = path(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        grads.append(torch.autograd.grad(y, [x, b], dy))
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_reference_gradients_pass_gradcheck():
    fu, fd = lowpass(8, 2, 8), lowpass(8, 2, 8)
    x, b = make_inputs(4, channels=2, size=4)
    # Away from the kink of the leaky ReLU and the clamp, finite differences are exact to O(eps^2).
    check = lambda x, b: filtered_lrelu_ref(x, fu, fd, b, up=2, down=2, padding=(4, 3, 4, 3), clamp=None)
    assert torch.autograd.gradcheck(check, (x.requires_grad_(), b.requires_grad_()), eps=1e-6, atol=1e-6)


def test_bad_arguments_are_explained():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(NetworkConfigError, match="b must be a vector of 2 channels"):
        filtered_lrelu(x, b=torch.zeros(3))
    with pytest.raises(NetworkConfigError, match="up=0"):
        filtered_lrelu(x, up=0)
    with pytest.raises(NetworkConfigError, match="leaves no output pixels"):
        filtered_lrelu(x, padding=-3)
    with pytest.raises(NetworkConfigError, match="impl='fast'"):
        filtered_lrelu(x, impl="fast")
    with pytest.raises(CudaOpsError, match="needs a CUDA tensor"):
        filtered_lrelu(x, impl="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_cuda_matches_reference_with_gradients(name, dtype, tol):
    fu, fd, up, down, padding, gain, slope, clamp, flip = CASES[name]
    fu, fd = (f().float().cuda() if f else None for f in (fu, fd))
    results = {}
    for impl in ("ref", "cuda"):
        x, b = (t.to("cuda", dtype).requires_grad_() for t in make_inputs(5, channels=4, size=9))
        y = filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp,
                           flip_filter=flip, impl=impl)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64).to("cuda", dtype)
        results[impl] = (y, *torch.autograd.grad(y, [x, b], dy))
    for ref, got in zip(results["ref"], results["cuda"]):
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
