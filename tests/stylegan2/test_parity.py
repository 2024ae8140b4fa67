"""Parity with NVIDIA's StyleGAN2-ADA: every fixture in tests/data/stylegan2 (made by running NVIDIA's code,
see its README) loads to NVIDIA's exact weights and gives NVIDIA's ws and images."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan2 import load_generator
from stylegan2 import networks
from stylegan2.ops import bias_act
from tolerances import assert_image_close, assert_relative_close, parity_tolerance

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan2"
MANIFEST = json.loads((DATA / "fixtures.json").read_text())
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
PLACEHOLDER = b"# NVIDIA source omitted from sgsim test data (licence)"


def case_param(case: dict) -> object:
    return pytest.param(case, id=f"{case['file']}:{case['network']}")


CASES = [case_param(case) for case in MANIFEST["cases"]]
OUTPUT_CASES = [case_param(case) for case in MANIFEST["cases"] if "outputs" in case]


def digest(tensor: torch.Tensor) -> list:
    """[shape, dtype, sha256 prefix of the raw bytes], the form fixtures.json records."""
    raw = tensor.detach().cpu().contiguous().numpy().tobytes()
    return [list(tensor.shape), str(tensor.dtype).removeprefix("torch."), hashlib.sha256(raw).hexdigest()[:16]]


def expected_arrays(case: dict) -> dict[str, np.ndarray]:
    with np.load(DATA / case["outputs"]) as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.mark.parametrize("case", CASES)
def test_state_dict_is_bit_identical_to_nvidias(case: dict) -> None:
    state = load_generator(DATA / case["file"], network=case["network"]).state_dict()
    expected = MANIFEST["states"][case["state"]]
    missing = sorted(set(expected) - set(state))
    assert not missing, f"keys NVIDIA's generator has and ours lacks: {missing}"
    differing = [key for key in expected if digest(state[key]) != expected[key]]
    assert not differing, f"tensors that differ from NVIDIA's (shape, dtype or bits): {differing}"
    extra = set(state) - set(expected)
    if "label_concat" in case:
        # Original StyleGAN2's LabelConcat has no ADA twin: its one extra tensor must be W itself.
        weight = torch.from_numpy(expected_arrays(case)[case["label_concat"]])
        assert len(extra) == 1, f"expected one LabelConcat tensor beyond NVIDIA's keys, got {sorted(extra)}"
        value = state[extra.pop()]
        assert torch.equal(value, weight) or torch.equal(value, weight.T)
    else:
        assert not extra, f"keys NVIDIA's generator lacks: {sorted(extra)}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_ws_and_images_match_nvidias(case: dict, device: str) -> None:
    G = load_generator(DATA / case["file"], device=device, network=case["network"])
    arrays = expected_arrays(case)
    for k, psi in enumerate(arrays["psi"].tolist()):
        cutoff = None if arrays["cutoff"][k] < 0 else int(arrays["cutoff"][k])
        z, c, ws_nvidia, img_nvidia = (torch.from_numpy(arrays[key][k]).to(device) for key in ("z", "c", "ws", "img"))
        with torch.no_grad():
            ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            img_from_ws = G.synthesis(ws_nvidia, noise_mode="const", force_fp32=True)
            img = G(z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode="const", force_fp32=True)
        where = f"{case['file']} psi={psi} cutoff={cutoff}"
        # NVIDIA's float32 run against ours (tests/tolerances.py parity_tolerance, from the widest reduction, a 3x3
        # convolution over all input channels, and the weight-layer count, toRGB and skips included): ws in relative
        # L2 against the mapping's bound, images in PSNR against the layers they cross (synthesis from NVIDIA's ws,
        # mapping and synthesis from z).
        assert_relative_close(ws.cpu(), ws_nvidia.cpu(), parity_tolerance(G.mapping), f"{where}: ws")
        assert_image_close(img_from_ws.cpu(), img_nvidia.cpu(), parity_tolerance(G.synthesis), f"{where}: image from ws")
        assert_image_close(img.cpu(), img_nvidia.cpu(), parity_tolerance(G), f"{where}: image from z")


# Each mistake is one a port could make and that changes every image by little: the bound must still see it.
MISTAKES = {
    # lrelu's gain sqrt(2) written as 1.414: 0.01 % per layer, compounding over the layers.
    "lrelu gain rounded": lambda monkeypatch: monkeypatch.setitem(
        bias_act.ACTIVATIONS, "lrelu", dataclasses.replace(bias_act.ACTIVATIONS["lrelu"], def_gain=1.414)),
    # normalize_2nd_moment with epsilon 1e-3 instead of 1e-8: z shrinks by 0.05 %.
    "z normalised with another epsilon": lambda monkeypatch: monkeypatch.setattr(
        networks, "normalize_2nd_moment", functools.partial(networks.normalize_2nd_moment, eps=1e-3)),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_slightly_wrong_generator_fails_the_comparison(mistake: str, monkeypatch) -> None:
    case = next(case for case in MANIFEST["cases"] if case["file"] == "ada_skip32.pkl" and "outputs" in case)
    G = load_generator(DATA / case["file"], network=case["network"])
    arrays = expected_arrays(case)
    MISTAKES[mistake](monkeypatch)
    z, c, img_nvidia = (torch.from_numpy(arrays[key][0]) for key in ("z", "c", "img"))
    with torch.no_grad():
        img = G(z, c, truncation_psi=float(arrays["psi"][0]), noise_mode="const", force_fp32=True)
    with pytest.raises(AssertionError, match="PSNR"):
        assert_image_close(img, img_nvidia, parity_tolerance(G))


def test_fp16_blocks_run_in_fp32_on_the_cpu() -> None:
    """num_fp16_res only applies on CUDA (docs/reference.md#mixed-precision), so force_fp32=False changes nothing on the CPU."""
    case = next(case for case in MANIFEST["cases"] if case["file"] == "ada_fp16_64.pkl")
    G = load_generator(DATA / case["file"])
    arrays = expected_arrays(case)
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(arrays["ws"][0]), noise_mode="const", force_fp32=False)
    assert img.dtype == torch.float32
    assert_image_close(img, torch.from_numpy(arrays["img"][0]), parity_tolerance(G.synthesis))


@pytest.mark.parametrize("name", sorted({case["file"] for case in MANIFEST["cases"] if case["file"].startswith("ada_")}))
def test_nvidia_fixtures_carry_no_nvidia_source(name: str) -> None:
    raw = (DATA / name).read_bytes()
    assert PLACEHOLDER in raw
    assert b"modulated_conv2d" not in raw and b"import torch" not in raw
