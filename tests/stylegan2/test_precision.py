"""stylegan2.precision: a built generator runs its high-resolution blocks in fp16 (checked on the CPU) and gets its settings back."""

import dataclasses

import pytest
import torch

from stylegan2 import Generator
from stylegan2.networks import SynthesisLayer, lowest_fp16_resolution
from stylegan2.precision import FP32, MIXED, SynthesisPrecision, synthesis_precision
from tolerances import assert_image_close, parity_tolerance

# fp16 in the 32 and 64 px blocks of a 64 px generator, NVIDIA's clamp, run on the CPU.
HALF_ON_CPU = SynthesisPrecision(num_fp16_res=2, conv_clamp=256, fp16_on_cpu=True)
# One fp16 forward of this tiny generator measured 71 dB; fp16 keeps 11 significant bits (~66 dB of a
# unit signal), so 50 dB leaves room for rounding to add up over layers without hiding a real error.
FORWARD_MIN_PSNR_DB = 50.0


@pytest.fixture(scope="module")
def generator() -> Generator:
    """A 64 px generator with its own seeded initialisation, whose images respond to w like a trained one's."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                      mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 512, "channel_max": 32})
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def ws(generator) -> torch.Tensor:
    return generator.mapping(torch.randn(3, 32, generator=torch.Generator().manual_seed(0)), None, truncation_psi=0.7)


def block_dtypes(G: Generator, ws: torch.Tensor) -> dict[int, torch.dtype]:
    """The dtype of each block's features in one forward pass."""
    seen: dict[int, torch.dtype] = {}
    hooks = [getattr(G.synthesis, f"b{res}").register_forward_hook(lambda m, args, out, res=res: seen.__setitem__(res, out[0].dtype))
             for res in G.synthesis.block_resolutions]
    try:
        G.synthesis(ws)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_lowest_fp16_resolution_follows_nvidia():
    assert lowest_fp16_resolution(1024, 4) == 128  # ADA: the 4 highest of 1024 px are 128..1024
    assert lowest_fp16_resolution(64, 2) == 32
    assert lowest_fp16_resolution(64, 10) == 8  # the 4 px block never runs in fp16
    assert lowest_fp16_resolution(1024, 0) > 1024


def test_fp16_runs_in_the_highest_blocks_only(generator, ws):
    with torch.no_grad(), synthesis_precision(generator.synthesis, HALF_ON_CPU):
        dtypes = block_dtypes(generator, ws)
    assert dtypes == {4: torch.float32, 8: torch.float32, 16: torch.float32, 32: torch.float16, 64: torch.float16}


def test_bf16_blocks_compute_in_bf16_on_the_cpu_and_stay_close_to_fp32(generator, ws, psnr):
    """bfloat16 blocks need neither a GPU nor a clamp: they run on the CPU as asked, in bf16 themselves (not under
    autocast), and their image (accumulated in fp32) stays near fp32's; the blocks' own dtype comes back."""
    bf16 = SynthesisPrecision(num_fp16_res=2, dtype=torch.bfloat16)
    with torch.no_grad():
        reference = generator.synthesis(ws)
        with synthesis_precision(generator.synthesis, bf16):
            dtypes = block_dtypes(generator, ws)
            image = generator.synthesis(ws)
    assert dtypes == {4: torch.float32, 8: torch.float32, 16: torch.float32, 32: torch.bfloat16, 64: torch.bfloat16}
    assert image.dtype == torch.float32 and not torch.equal(image, reference)
    # bf16 keeps 8 significant bits to fp16's 11: measured 53 dB here (fp16: 71 dB), 43 dB at 256 px with config-f widths.
    assert psnr(image, reference) >= 45.0
    assert all(getattr(generator.synthesis, f"b{res}").reduced_dtype == torch.float16 for res in generator.synthesis.block_resolutions)


def test_fixed_weights_are_prepared_once_give_the_same_images_and_go_afterwards(generator, ws):
    """fixed_weights: each modulated layer's weight in its block's dtype and layout, demodulation energy precomputed;
    the images are those of the weights used afresh (bit for bit), an fp32 pass inside still uses the fp32
    weights, and nothing stays behind."""
    layers = [m for m in generator.synthesis.modules() if isinstance(m, SynthesisLayer)]
    for base in (SynthesisPrecision(num_fp16_res=0, fused_modconv=False),
                 SynthesisPrecision(num_fp16_res=2, fused_modconv=False, channels_last=True, dtype=torch.bfloat16)):
        fixed = dataclasses.replace(base, fixed_weights=True)
        with torch.no_grad():
            with synthesis_precision(generator.synthesis, base):
                fresh, fresh_fp32 = generator.synthesis(ws), generator.synthesis(ws, force_fp32=True)
            with synthesis_precision(generator.synthesis, fixed):
                assert all(layer.fixed is not None for layer in layers)
                top = generator.synthesis.b64
                assert top.conv1.fixed.weight.dtype == (base.dtype if base.num_fp16_res else torch.float32)
                if base.channels_last:  # the layout the convolution wants, for the transposed one as it views it
                    assert top.conv1.fixed.weight.is_contiguous(memory_format=torch.channels_last)
                    assert top.conv0.fixed.weight.transpose(0, 1).is_contiguous(memory_format=torch.channels_last)
                assert torch.equal(generator.synthesis(ws), fresh)
                assert torch.equal(generator.synthesis(ws, force_fp32=True), fresh_fp32)
        assert all(layer.fixed is None for layer in layers)


def test_fp16_forward_stays_close_to_fp32(generator, ws, psnr):
    with torch.no_grad():
        reference = generator.synthesis(ws)
        with synthesis_precision(generator.synthesis, HALF_ON_CPU):
            half = generator.synthesis(ws)
    assert half.dtype == torch.float32
    assert not torch.equal(half, reference)  # fp16 really ran
    assert psnr(half, reference) >= FORWARD_MIN_PSNR_DB


def test_fp16_gradient_wrt_ws_points_the_same_way(generator, ws):
    """The edit loop follows d(loss)/d(ws): fp16 must not turn it."""
    target = torch.randn(ws.shape[0], 3, 64, 64, generator=torch.Generator().manual_seed(5))

    def gradient() -> torch.Tensor:
        w = ws.clone().requires_grad_(True)
        (generator.synthesis(w) * target).sum().backward()
        return w.grad.flatten()

    reference = gradient()
    with synthesis_precision(generator.synthesis, HALF_ON_CPU):
        half = gradient()
    assert torch.isfinite(half).all()
    assert torch.nn.functional.cosine_similarity(half, reference, dim=0) > 0.999


def test_mixed_without_a_gpu_changes_nothing(generator, ws):
    """On the CPU the fp16 blocks stay fp32 and a clamp of 256 does not bite: bit-identical images."""
    with torch.no_grad():
        reference = generator.synthesis(ws)
        with synthesis_precision(generator.synthesis, MIXED):
            assert torch.equal(generator.synthesis(ws), reference)


def test_fp32_overrides_a_mixed_precision_network(ws):
    torch.manual_seed(2)
    G = Generator(32, 0, 32, 64, 3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 512, "channel_max": 32, "num_fp16_res": 2}).eval()
    for block in G.synthesis.children():
        block.fp16_on_cpu = True
    with torch.no_grad():
        assert block_dtypes(G, ws)[64] == torch.float16
        with synthesis_precision(G.synthesis, FP32):
            assert set(block_dtypes(G, ws).values()) == {torch.float32}
            assert torch.equal(G.synthesis(ws), G.synthesis(ws, force_fp32=True))


def test_settings_come_back_even_after_an_error(generator):
    layer = generator.synthesis.b64.conv1
    before = (generator.synthesis.num_fp16_res, generator.synthesis.b64.use_fp16, layer.conv_clamp, generator.synthesis.b64.fp16_on_cpu)
    with pytest.raises(RuntimeError, match="inside"):
        with synthesis_precision(generator.synthesis, HALF_ON_CPU):
            assert generator.synthesis.b64.use_fp16 and layer.conv_clamp == 256
            raise RuntimeError("inside")
    after = (generator.synthesis.num_fp16_res, generator.synthesis.b64.use_fp16, layer.conv_clamp, generator.synthesis.b64.fp16_on_cpu)
    assert after == before == (0, False, None, False)


def test_a_network_s_own_clamp_is_kept(ws):
    torch.manual_seed(3)
    G = Generator(32, 0, 32, 64, 3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 512, "channel_max": 32, "conv_clamp": 8})
    with synthesis_precision(G.synthesis, MIXED):
        assert {m.conv_clamp for m in G.synthesis.modules() if hasattr(m, "conv_clamp")} == {8}


def test_unfused_modulated_convolutions_give_the_same_images_without_grouped_convolutions(generator, ws, monkeypatch):
    """fused_modconv=False scales activations instead of batching samples as groups: same images, plain convolutions."""
    import torch.nn.functional as F

    groups_seen = []  # groups of every convolution that is not a depthwise FIR filter (weight [C, 1, kh, kw])
    conv2d = F.conv2d

    def spy(x, weight, *args, groups=1, **kwargs):
        if weight.shape[1] > 1:
            groups_seen.append(groups)
        return conv2d(x, weight, *args, groups=groups, **kwargs)

    monkeypatch.setattr(F, "conv2d", spy)
    fused = generator.synthesis(ws)
    assert set(groups_seen) == {len(ws)}  # the default in inference: the batch as the groups of one convolution
    groups_seen.clear()
    with synthesis_precision(generator.synthesis, SynthesisPrecision(num_fp16_res=0, fused_modconv=False)):
        unfused = generator.synthesis(ws)
    assert groups_seen and set(groups_seen) == {1}
    assert_image_close(unfused, fused, parity_tolerance(generator.synthesis))  # the same layers, other summation orders
    assert all(getattr(generator.synthesis, f"b{res}").fused_modconv is None for res in generator.synthesis.block_resolutions)
