"""Parity with NVIDIA's StyleGAN3: every fixture in tests/data/stylegan3 (made by running NVlabs/stylegan3, see its
README) loads to NVIDIA's exact weights and gives NVIDIA's ws and images, with and without the input transform."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan2 import load_generator
from stylegan2.families import architecture_of
from stylegan2.networks_stylegan3 import input_transform

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan3"
MANIFEST = json.loads((DATA / "fixtures.json").read_text())
WS_TOLERANCE = 1e-5  # the same 2-layer mapping as StyleGAN2's; fp32 rounding stays near 1e-6
# Images span about +-2. Each of the 15 layers adds a few float32 roundings relative to its activations
# (~1e-7 each, and our modulated convolution scales activations where NVIDIA scales weights: the same products
# in another order), and the leaky ReLUs and low-pass filters do not amplify them: 1e-6 measured, 1e-4 allowed.
IMAGE_TOLERANCE = 1e-4
TRANSFORM_TOLERANCE = 1e-6  # our float64 inverse rounded to float32 against NVIDIA's numpy inverse rounded the same way
KINDS = {"sg3t": "stylegan3-t", "sg3r": "stylegan3-r"}


def case_param(case: dict) -> object:
    return pytest.param(case, id=f"{case['file']}:{case['network']}")


CASES = [case_param(case) for case in MANIFEST["cases"]]
OUTPUT_CASES = [case_param(case) for case in MANIFEST["cases"] if "outputs" in case]


def digest(tensor: torch.Tensor) -> list:
    """[shape, dtype, sha256 prefix of the raw bytes], the form fixtures.json records."""
    raw = tensor.detach().cpu().contiguous().numpy().tobytes()
    return [list(tensor.shape), str(tensor.dtype).removeprefix("torch."), hashlib.sha256(raw).hexdigest()[:16]]


@pytest.mark.parametrize("case", CASES)
def test_state_dict_is_bit_identical_to_nvidias(case: dict) -> None:
    G = load_generator(DATA / case["file"], network=case["network"])
    state = G.state_dict()
    expected = MANIFEST["states"][case["state"]]
    assert set(state) == set(expected), f"keys differ: {sorted(set(state) ^ set(expected))[:5]}"
    differing = [key for key in expected if digest(state[key]) != expected[key]]
    assert not differing, f"tensors that differ from NVIDIA's (shape, dtype or bits): {differing}"
    assert architecture_of(G.init_kwargs) == KINDS[case["file"][:4]]


@pytest.mark.parametrize("case", CASES)
def test_rebuilt_filters_equal_the_stored_ones(case: dict) -> None:
    """Our filter design reproduces NVIDIA's, so a converted or hand-built network needs no stored filters."""
    from stylegan2.families import make_generator

    G = load_generator(DATA / case["file"], network=case["network"])
    built = make_generator(G.init_kwargs).state_dict()
    for key, value in G.state_dict().items():
        if key.endswith(("up_filter", "down_filter")):
            torch.testing.assert_close(built[key], value, rtol=0, atol=1e-7, msg=key)


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_images_match_nvidias(case: dict) -> None:
    G = load_generator(DATA / case["file"], network=case["network"])
    with np.load(DATA / case["outputs"]) as arrays:
        expected = {key: arrays[key] for key in arrays.files}
    for k in range(len(expected["psi"])):
        G.synthesis.set_transform(tuple(expected["translate"][k]), float(expected["rotate"][k]))
        transform = torch.from_numpy(expected["transform"][k])
        torch.testing.assert_close(G.synthesis.input.transform, transform, rtol=0, atol=TRANSFORM_TOLERANCE)
        G.synthesis.input.transform.copy_(transform)  # the images are compared under NVIDIA's exact matrix
        cutoff = int(expected["cutoff"][k])
        with torch.no_grad():
            ws = G.mapping(torch.from_numpy(expected["z"][k]), torch.from_numpy(expected["c"][k]),
                           truncation_psi=float(expected["psi"][k]), truncation_cutoff=None if cutoff < 0 else cutoff)
            images = G.synthesis(ws, noise_mode="const")
        torch.testing.assert_close(ws, torch.from_numpy(expected["ws"][k]), rtol=0, atol=WS_TOLERANCE)
        torch.testing.assert_close(images, torch.from_numpy(expected["img"][k]), rtol=0, atol=IMAGE_TOLERANCE)


def test_input_transform_is_the_inverse_rigid_motion() -> None:
    """translate then rotate, inverted: the transform maps the moved image's coordinates back."""
    m = input_transform((0.25, -0.5), 90.0)
    point = torch.tensor([0.25 + 0.0, -0.5 + 0.0, 1.0])  # where the origin moves to
    torch.testing.assert_close(m @ point, torch.tensor([0.0, 0.0, 1.0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(input_transform(), torch.eye(3))


def test_recomputing_layers_in_backward_gives_the_same_gradients():
    """The memory-saving recomputation changes nothing but memory: the same ws gradient, bit for bit."""
    G = load_generator(DATA / "sg3r_16.pkl")
    ws = G.mapping(torch.from_numpy(np.random.RandomState(0).randn(2, G.z_dim).astype(np.float32)), None).detach()
    grads = []
    for recompute in (True, False):
        G.synthesis.recompute_in_backward = recompute
        w = ws.clone().requires_grad_(True)
        G.synthesis(w).square().mean().backward()
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
