"""bias_act: closed forms of every activation, defaults, derivatives of the reference path, and CUDA parity."""

import math

import pytest
import torch

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.ops.bias_act import ACTIVATIONS, bias_act

SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# Closed forms written from their textbook definitions, independent of torch's implementations.
CLOSED_FORMS = {
    "linear": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "lrelu": lambda v: v if v > 0 else 0.2 * v,
    "tanh": math.tanh,
    "sigmoid": sigmoid,
    "elu": lambda v: v if v > 0 else math.exp(v) - 1,
    "selu": lambda v: SELU_SCALE * (v if v > 0 else SELU_ALPHA * (math.exp(v) - 1)),
    "softplus": lambda v: math.log1p(math.exp(v)),
    "swish": lambda v: v * sigmoid(v),
}
DEFAULT_GAINS = {"relu": math.sqrt(2), "lrelu": math.sqrt(2), "swish": math.sqrt(2)}


def test_every_activation_has_a_closed_form():
    assert set(ACTIVATIONS) == set(CLOSED_FORMS)


@pytest.mark.parametrize("act", sorted(CLOSED_FORMS))
def test_homogeneous_flag_says_whether_a_positive_gain_commutes_with_the_activation(act):
    """The generator moves a gain in front of activations flagged homogeneous: the flag must match the closed form."""
    values = [v / 4 for v in range(-12, 13)]
    commutes = all(math.isclose(CLOSED_FORMS[act](2.5 * v), 2.5 * CLOSED_FORMS[act](v), rel_tol=1e-12, abs_tol=1e-12) for v in values)
    assert ACTIVATIONS[act].homogeneous == commutes


@pytest.mark.parametrize("act", sorted(CLOSED_FORMS))
def test_matches_closed_form_with_bias_along_dim_and_default_gain(act):
    x = torch.linspace(-3, 3, 24, dtype=torch.float64).reshape(2, 3, 4)
    b = torch.tensor([0.5, -0.25, 0.0, 1.0], dtype=torch.float64)
    y = bias_act(x, b, dim=2, act=act)
    gain = DEFAULT_GAINS.get(act, 1.0)
    expected = [gain * CLOSED_FORMS[act](v + b[i % 4].item()) for i, v in enumerate(x.flatten().tolist())]
    # float64 on both sides: a bias add, one libm or ATen function (within a few ulp) and a gain, on values below 6:
    # 64 u64 of that size is 4e-14, so 1e-12 leaves room for any libm and still sees a gain off by 1e-12 relative.
    assert torch.allclose(y.flatten(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_a_gain_off_in_its_twelfth_digit_fails_the_closed_form_comparison(monkeypatch):
    """The 1e-12 bound above is tight enough to see lrelu's gain sqrt(2) off by one part in 1e12."""
    import dataclasses

    from stylegan2.ops import bias_act as module

    monkeypatch.setitem(module.ACTIVATIONS, "lrelu", dataclasses.replace(ACTIVATIONS["lrelu"], def_gain=math.sqrt(2) * (1 + 1e-12)))
    x = torch.linspace(-3, 3, 24, dtype=torch.float64)
    expected = torch.tensor([math.sqrt(2) * CLOSED_FORMS["lrelu"](v) for v in x.tolist()], dtype=torch.float64)
    assert not torch.allclose(bias_act(x, act="lrelu"), expected, rtol=0, atol=1e-12)


def test_alpha_gain_and_clamp():
    x = torch.tensor([[-4.0, -1.0, 0.5, 3.0]])
    y = bias_act(x, act="lrelu", alpha=0.1, gain=2.0, clamp=4.0)
    assert torch.equal(y, torch.tensor([[-0.8, -0.2, 1.0, 4.0]]))
    assert torch.equal(bias_act(x, clamp=0.75), torch.tensor([[-0.75, -0.75, 0.5, 0.75]]))


def test_bad_arguments_raise():
    x = torch.zeros(2, 3)
    with pytest.raises(NetworkConfigError, match="unknown activation 'gelu'"):
        bias_act(x, act="gelu")
    with pytest.raises(NetworkConfigError, match="does not match"):
        bias_act(x, torch.zeros(4))
    with pytest.raises(NetworkConfigError, match="impl"):
        bias_act(x, impl="triton")
    with pytest.raises(CudaOpsError, match="CUDA tensor"):
        bias_act(x, impl="cuda")


def _away_from_kinks(shape, seed):
    """Samples at least 0.1 away from 0 (the kinks of relu/lrelu/elu) and from the clamp limit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 1.6 + 0.1
    return x * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_reference_first_and_second_derivatives(act):
    x = _away_from_kinks((2, 3, 4), 0).requires_grad_(True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # zero bias keeps the samples off the kinks
    f = lambda x, b: bias_act(x, b, act=act, gain=1.3)
    assert torch.autograd.gradcheck(f, (x, b))
    assert torch.autograd.gradgradcheck(f, (x, b))


def test_clamp_stops_the_gradient_outside_the_limit():
    x = torch.tensor([-3.0, -0.5, 0.5, 3.0], requires_grad=True)
    bias_act(x, act="linear", clamp=1.0).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
# Elementwise: each output is a few roundings and one transcendental function (a few ulp) per pass; the second
# derivative chains about ten such operations. fp32: 1e-5 is about 170 u of the largest value. fp16 (u = 4.9e-4)
# also rounds every stored intermediate: 1e-2 is 20 u.
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2)])
def test_cuda_matches_reference_with_derivatives(act, dtype, tol):
    x = (_away_from_kinks((2, 8, 5, 5), 1) * 2).to("cuda", dtype).requires_grad_(True)
    b = torch.randn(8, device="cuda", dtype=dtype, requires_grad=True)
    outputs = {}
    for impl in ("ref", "cuda"):
        y = bias_act(x, b, act=act, clamp=2.5, impl=impl)
        dx, db = torch.autograd.grad(y.square().sum(), (x, b), create_graph=True)
        ddx = torch.autograd.grad(dx.sum() + db.sum(), x)[0]
        outputs[impl] = (y, dx, db, ddx)
    for ref, got in zip(outputs["ref"], outputs["cuda"]):
        assert torch.allclose(got.float(), ref.float(), atol=tol * max(1.0, ref.abs().max().item()), rtol=tol)


@cuda
def test_cuda_handles_channels_last_and_float64_gradcheck():
    x = torch.randn(2, 4, 3, 3, device="cuda").to(memory_format=torch.channels_last)
    b = torch.randn(4, device="cuda")
    # lrelu of x + b and one gain: two roundings of values below 5, so 1e-6 (about 4 u of them) holds.
    assert torch.allclose(bias_act(x, b, act="lrelu", impl="cuda"), bias_act(x, b, act="lrelu", impl="ref"), atol=1e-6)
    xd = torch.randn(2, 3, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    bd = torch.randn(3, device="cuda", dtype=torch.float64, requires_grad=True)
    f = lambda x, b: bias_act(x, b, act="swish", clamp=5.0, impl="cuda")
    assert torch.autograd.gradcheck(f, (xd, bd)) and torch.autograd.gradgradcheck(f, (xd, bd))
