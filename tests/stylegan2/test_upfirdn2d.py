"""upfirdn2d: against an independent numpy/scipy computation, filter set-up, upsample2d, derivatives, CUDA parity."""

import numpy as np
import pytest
import scipy.signal
import torch

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.ops.upfirdn2d import Geometry, setup_filter, upfirdn2d, upsample2d
from tolerances import LAMBDA, unit_roundoff


def expected_upfirdn(x: np.ndarray, f: np.ndarray, up, down, pad, flip_filter=False, gain=1.0) -> np.ndarray:
    """Textbook definition per image: zero insertion, pad or crop, true convolution (scipy), decimation."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    f2 = np.outer(f, f) if f.ndim == 1 else f
    f2 = f2[::-1, ::-1] if flip_filter else f2  # flip_filter means correlation
    out = []
    for image in x.reshape(-1, *x.shape[2:]):
        h, w = image.shape
        u = np.zeros((h * upy, w * upx))
        u[::upy, ::upx] = image
        u = np.pad(u, ((max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
        u = u[max(-py0, 0) : u.shape[0] - max(-py1, 0), max(-px0, 0) : u.shape[1] - max(-px1, 0)]
        y = scipy.signal.convolve2d(u, f2 * gain, mode="valid")
        out.append(y[::downy, ::downx])
    return np.stack(out).reshape(*x.shape[:2], *out[0].shape)


def filter_error(abs_sums: np.ndarray, taps: int, dtype: torch.dtype) -> np.ndarray:
    """Per output, how far two computations of one FIR filter may differ: each is a sum of at most `taps`
    products (a separable filter's two passes sum fewer), so each errs by LAMBDA sqrt(taps) u sum|x f gain|."""
    return 2 * LAMBDA * np.sqrt(taps) * unit_roundoff(dtype) * abs_sums


def assert_filter_close(got: torch.Tensor, expected: np.ndarray, abs_sums: np.ndarray, taps: int) -> None:
    """Elementwise within filter_error: a relative error per output, against the sum of its terms' magnitudes (an
    output with no nonzero term, in the padding, must be exactly zero)."""
    difference = np.abs(got.detach().numpy() - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(difference == 0, 0.0, difference / filter_error(abs_sums, taps, got.dtype))
    assert got.shape == expected.shape and excess.max() <= 1, f"{excess.max():.3g} times the rounding bound"


ASYMMETRIC = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])  # 3 wide, 2 high, no symmetry: catches any flip or axis swap
CASES = [
    # filter, up, down, padding [x0, x1, y0, y1], flip_filter, gain
    (ASYMMETRIC, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0),
    (ASYMMETRIC, (2, 3), (1, 1), (1, 2, 0, 3), False, 2.0),
    (ASYMMETRIC, (1, 1), (2, 3), (2, 1, 1, 0), True, 1.0),
    (ASYMMETRIC, (3, 2), (2, 2), (-1, 2, 3, -2), False, 0.5),
    (np.array([1.0, 3.0, 3.0, 1.0]) / 8, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),
    (np.linspace(1, 2, 9), (2, 1), (1, 2), (4, 4, 3, 5), True, 1.0),  # >= 8 taps: separable path
    # Padding the same on both sides of each axis (the generator's): the convolution pads.
    (ASYMMETRIC, (2, 2), (1, 1), (1, 1, 2, 2), False, 1.0),
    (np.linspace(1, 2, 9), (1, 1), (2, 2), (3, 3, 4, 4), False, 1.0),
]


def run_case(x: torch.Tensor, f, up, down, pad, flip, gain) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int]:
    """(ours, the textbook result, the textbook result on |x| and |f| (the sums of the terms' magnitudes), taps)."""
    filt = setup_filter(f.tolist(), normalize=False) if f.ndim == 1 else torch.tensor(f, dtype=torch.float32)
    got = upfirdn2d(x, filt, up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
    exact_f = f.astype(np.float32).astype(np.float64)
    expected = expected_upfirdn(x.numpy(), exact_f, up, down, pad, flip, gain)
    abs_sums = expected_upfirdn(np.abs(x.numpy()), np.abs(exact_f), up, down, pad, flip, abs(gain))
    return got, expected, abs_sums, exact_f.size**2 if f.ndim == 1 else exact_f.size


@pytest.mark.parametrize("f,up,down,pad,flip,gain", CASES)
def test_matches_independent_computation(f, up, down, pad, flip, gain):
    """float64 in, so both sides hold float64's rounding bound: a gain off by one part in a million shows."""
    got, expected, abs_sums, taps = run_case(torch.randn(2, 3, 7, 6, dtype=torch.float64), f, up, down, pad, flip, gain)
    assert_filter_close(got, expected, abs_sums, taps)


@pytest.mark.parametrize("mistake", ["flipped filter", "gain off by 1e-6"])
def test_a_slightly_wrong_filter_fails_the_comparison(mistake):
    f, up, down, pad, flip, gain = CASES[1]
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    wrong = (f, up, down, pad, not flip, gain) if mistake == "flipped filter" else (f, up, down, pad, flip, gain * (1 + 1e-6))
    got = run_case(x, *wrong)[0]
    _, expected, abs_sums, taps = run_case(x, f, up, down, pad, flip, gain)
    with pytest.raises(AssertionError, match="times the rounding bound"):
        assert_filter_close(got, expected, abs_sums, taps)


def test_setup_filter():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert torch.allclose(f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    assert setup_filter(list(range(1, 9))).ndim == 1  # 8 taps stay separable
    assert torch.allclose(setup_filter([1, 2, 1], gain=4).sum(), torch.tensor(4.0))
    assert torch.equal(setup_filter([1, 2], flip_filter=True, normalize=False), torch.tensor([[4.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(NetworkConfigError):
        setup_filter([])


def test_upsample2d_keeps_size_and_dc_level():
    f = setup_filter([1, 3, 3, 1])
    ones = torch.ones(1, 2, 8, 8)
    up = upsample2d(ones, f)
    assert up.shape == (1, 2, 16, 16) and torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))


def test_upsample2d_padding_is_the_reference_formula():
    # docs/reference.md#resampling-filters: upsample2d pads [(fw+1)//2, (fw-2)//2] = [2, 1] for the 4-tap filter.
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 1, 5, 5)
    assert torch.equal(upsample2d(x, f), upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4))


def test_bad_inputs_raise():
    f = setup_filter([1, 3, 3, 1])
    with pytest.raises(NetworkConfigError, match="N, C, H, W"):
        upfirdn2d(torch.zeros(3, 4, 4), f)
    with pytest.raises(NetworkConfigError, match="no output pixels"):
        upfirdn2d(torch.zeros(1, 1, 2, 2), f, padding=-2)
    with pytest.raises(NetworkConfigError, match="up"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), f, up=0)
    with pytest.raises(CudaOpsError, match="CUDA tensor"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), f, impl="cuda")


@pytest.mark.parametrize("separable", [False, True])
def test_reference_first_and_second_derivatives(separable):
    f = setup_filter([1, 2, 4, 1], separable=separable).double()
    x = torch.randn(1, 1, 4, 3, dtype=torch.float64, requires_grad=True)
    op = lambda x: upfirdn2d(x, f, up=(2, 1), down=(1, 2), padding=[1, 2, -1, 3], gain=3)
    assert torch.autograd.gradcheck(op, (x,), fast_mode=True) and torch.autograd.gradgradcheck(op, (x,), fast_mode=True)


@pytest.mark.parametrize("f,up,down,pad,flip,gain", CASES)
def test_adjoint_geometry_gives_the_gradient(f, up, down, pad, flip, gain):
    """The CUDA backward runs upfirdn2d with Geometry.adjoint; check that formula on the reference path."""
    filt = setup_filter(f.tolist(), normalize=False) if f.ndim == 1 else torch.tensor(f, dtype=torch.float32)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    y = upfirdn2d(x, filt, up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
    dy = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, dy)
    f_w, f_h = (filt.shape[-1], filt.shape[0])
    g = Geometry(up, down, pad, flip, gain).adjoint(6, 7, y.shape[3], y.shape[2], f_w, f_h)
    got = upfirdn2d(dy, filt, up=g.up, down=g.down, padding=g.padding, flip_filter=g.flip_filter, gain=g.gain)
    # Both are float64 sums of the same products in another order: filter_error bounds their difference.
    abs_sums = upfirdn2d(dy.abs(), filt.abs(), up=g.up, down=g.down, padding=g.padding, flip_filter=g.flip_filter, gain=abs(g.gain))
    assert_filter_close(got, expected.numpy(), abs_sums.detach().numpy(), filt.numel())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("f,up,down,pad,flip,gain", CASES)
# fp32: the kernel and the reference sum at most 81 products in other orders, LAMBDA sqrt(81) u = 2.1e-6 relative per
# pass, and the second derivative chains three passes: 1e-5 of the largest value. fp16 (u = 2^-11 = 4.9e-4) has
# its outputs rounded too: 1e-2 is 20 u.
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2)])
def test_cuda_matches_reference_with_derivatives(f, up, down, pad, flip, gain, dtype, tol):
    filt = (setup_filter(f.tolist(), normalize=False) if f.ndim == 1 else torch.tensor(f, dtype=torch.float32)).cuda()
    x = torch.randn(2, 3, 7, 6, device="cuda", dtype=dtype, requires_grad=True)
    results = {}
    for impl in ("ref", "cuda"):
        y = upfirdn2d(x, filt, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl=impl)
        (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (ddx,) = torch.autograd.grad(dx.square().sum(), x)
        results[impl] = (y, dx, ddx)
    for ref, got in zip(results["ref"], results["cuda"]):
        assert torch.allclose(got.float(), ref.float(), atol=tol * max(1.0, ref.abs().max().item()), rtol=tol)
