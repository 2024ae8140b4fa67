"""The generator: NVIDIA's state-dict layout, shapes and attributes, truncation, noise modes, w_avg tracking, conditioning."""

import json

import pytest
import torch

from stylegan2 import Generator
from stylegan2.errors import NetworkConfigError
from stylegan2.networks import modulated_conv2d, normalize_2nd_moment
from tolerances import U, assert_relative_close, network_error, parity_tolerance

TINY = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3)
TINY_SYNTHESIS = dict(channel_base=512, channel_max=32)

# The state dict of NVIDIA stylegan2-ada-pytorch's Generator(16, 0, 16, 32, 3, synthesis_kwargs=TINY_SYNTHESIS),
# read from that code: every name and shape must match for its checkpoints to load strictly.
NVIDIA_SKIP_32PX = {
    "synthesis.b4.const": (32, 4, 4),
    "synthesis.b4.resample_filter": (4, 4),
    "synthesis.b4.conv1.weight": (32, 32, 3, 3),
    "synthesis.b4.conv1.noise_strength": (),
    "synthesis.b4.conv1.bias": (32,),
    "synthesis.b4.conv1.resample_filter": (4, 4),
    "synthesis.b4.conv1.noise_const": (4, 4),
    "synthesis.b4.conv1.affine.weight": (32, 16),
    "synthesis.b4.conv1.affine.bias": (32,),
    "synthesis.b4.torgb.weight": (3, 32, 1, 1),
    "synthesis.b4.torgb.bias": (3,),
    "synthesis.b4.torgb.affine.weight": (32, 16),
    "synthesis.b4.torgb.affine.bias": (32,),
    "synthesis.b8.resample_filter": (4, 4),
    "synthesis.b8.conv0.weight": (32, 32, 3, 3),
    "synthesis.b8.conv0.noise_strength": (),
    "synthesis.b8.conv0.bias": (32,),
    "synthesis.b8.conv0.resample_filter": (4, 4),
    "synthesis.b8.conv0.noise_const": (8, 8),
    "synthesis.b8.conv0.affine.weight": (32, 16),
    "synthesis.b8.conv0.affine.bias": (32,),
    "synthesis.b8.conv1.weight": (32, 32, 3, 3),
    "synthesis.b8.conv1.noise_strength": (),
    "synthesis.b8.conv1.bias": (32,),
    "synthesis.b8.conv1.resample_filter": (4, 4),
    "synthesis.b8.conv1.noise_const": (8, 8),
    "synthesis.b8.conv1.affine.weight": (32, 16),
    "synthesis.b8.conv1.affine.bias": (32,),
    "synthesis.b8.torgb.weight": (3, 32, 1, 1),
    "synthesis.b8.torgb.bias": (3,),
    "synthesis.b8.torgb.affine.weight": (32, 16),
    "synthesis.b8.torgb.affine.bias": (32,),
    "synthesis.b16.resample_filter": (4, 4),
    "synthesis.b16.conv0.weight": (32, 32, 3, 3),
    "synthesis.b16.conv0.noise_strength": (),
    "synthesis.b16.conv0.bias": (32,),
    "synthesis.b16.conv0.resample_filter": (4, 4),
    "synthesis.b16.conv0.noise_const": (16, 16),
    "synthesis.b16.conv0.affine.weight": (32, 16),
    "synthesis.b16.conv0.affine.bias": (32,),
    "synthesis.b16.conv1.weight": (32, 32, 3, 3),
    "synthesis.b16.conv1.noise_strength": (),
    "synthesis.b16.conv1.bias": (32,),
    "synthesis.b16.conv1.resample_filter": (4, 4),
    "synthesis.b16.conv1.noise_const": (16, 16),
    "synthesis.b16.conv1.affine.weight": (32, 16),
    "synthesis.b16.conv1.affine.bias": (32,),
    "synthesis.b16.torgb.weight": (3, 32, 1, 1),
    "synthesis.b16.torgb.bias": (3,),
    "synthesis.b16.torgb.affine.weight": (32, 16),
    "synthesis.b16.torgb.affine.bias": (32,),
    "synthesis.b32.resample_filter": (4, 4),
    "synthesis.b32.conv0.weight": (16, 32, 3, 3),
    "synthesis.b32.conv0.noise_strength": (),
    "synthesis.b32.conv0.bias": (16,),
    "synthesis.b32.conv0.resample_filter": (4, 4),
    "synthesis.b32.conv0.noise_const": (32, 32),
    "synthesis.b32.conv0.affine.weight": (32, 16),
    "synthesis.b32.conv0.affine.bias": (32,),
    "synthesis.b32.conv1.weight": (16, 16, 3, 3),
    "synthesis.b32.conv1.noise_strength": (),
    "synthesis.b32.conv1.bias": (16,),
    "synthesis.b32.conv1.resample_filter": (4, 4),
    "synthesis.b32.conv1.noise_const": (32, 32),
    "synthesis.b32.conv1.affine.weight": (16, 16),
    "synthesis.b32.conv1.affine.bias": (16,),
    "synthesis.b32.torgb.weight": (3, 16, 1, 1),
    "synthesis.b32.torgb.bias": (3,),
    "synthesis.b32.torgb.affine.weight": (16, 16),
    "synthesis.b32.torgb.affine.bias": (16,),
    "mapping.w_avg": (16,),
    "mapping.fc0.weight": (16, 16),
    "mapping.fc0.bias": (16,),
    "mapping.fc1.weight": (16, 16),
    "mapping.fc1.bias": (16,),
    "mapping.fc2.weight": (16, 16),
    "mapping.fc2.bias": (16,),
    "mapping.fc3.weight": (16, 16),
    "mapping.fc3.bias": (16,),
    "mapping.fc4.weight": (16, 16),
    "mapping.fc4.bias": (16,),
    "mapping.fc5.weight": (16, 16),
    "mapping.fc5.bias": (16,),
    "mapping.fc6.weight": (16, 16),
    "mapping.fc6.bias": (16,),
    "mapping.fc7.weight": (16, 16),
    "mapping.fc7.bias": (16,),
}
NVIDIA_RESNET_ONLY = {
    "synthesis.b8.skip.weight": (32, 32, 1, 1),
    "synthesis.b8.skip.resample_filter": (4, 4),
    "synthesis.b16.skip.weight": (32, 32, 1, 1),
    "synthesis.b16.skip.resample_filter": (4, 4),
    "synthesis.b32.skip.weight": (16, 32, 1, 1),
    "synthesis.b32.skip.resample_filter": (4, 4),
}
NVIDIA_SKIP_ONLY = {f"synthesis.b{res}.torgb.{name}" for res in (4, 8, 16) for name in ("weight", "bias", "affine.weight", "affine.bias")}


def tiny_generator(seed: int = 0, **synthesis_kwargs) -> Generator:
    torch.manual_seed(seed)
    G = Generator(**TINY, synthesis_kwargs={**TINY_SYNTHESIS, **synthesis_kwargs}).eval()
    with torch.no_grad():  # non-zero noise strengths and w_avg so that noise and truncation are visible
        for name, tensor in G.named_parameters():
            if name.endswith("noise_strength"):
                tensor.fill_(0.5)
        G.mapping.w_avg.normal_()
    return G


def test_state_dict_has_nvidia_names_and_shapes():
    G = tiny_generator()
    assert {k: tuple(v.shape) for k, v in G.state_dict().items()} == NVIDIA_SKIP_32PX


def test_resnet_replaces_intermediate_torgb_by_skip_convolutions():
    G = tiny_generator(architecture="resnet")
    expected = {k: v for k, v in NVIDIA_SKIP_32PX.items() if k not in NVIDIA_SKIP_ONLY} | NVIDIA_RESNET_ONLY
    assert {k: tuple(v.shape) for k, v in G.state_dict().items()} == expected


def test_strict_load_of_a_state_dict_built_from_nvidia_names(random_weights):
    template = {k: torch.zeros(shape) for k, shape in NVIDIA_SKIP_32PX.items()}
    weights = random_weights(template, 7)
    G = Generator(**TINY, synthesis_kwargs=TINY_SYNTHESIS)
    G.load_state_dict(weights, strict=True)
    assert torch.equal(G.synthesis.b16.conv0.weight, weights["synthesis.b16.conv0.weight"])
    assert torch.equal(G.mapping.w_avg, weights["mapping.w_avg"])


def test_shapes_and_attributes():
    G = tiny_generator()
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, 0, 16, 32, 3)
    assert G.num_ws == 2 * 5 - 2 == G.mapping.num_ws == G.synthesis.num_ws
    z = torch.randn(2, 16)
    ws = G.mapping(z, None)
    assert ws.shape == (2, G.num_ws, 16)
    assert torch.equal(ws[:, 0], ws[:, -1])  # broadcast of one w
    img = G.synthesis(ws)
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32
    assert torch.equal(G(z), img)


def test_ffhq_config_f_has_18_ws_and_512_channels_at_low_resolution():
    G = Generator(512, 0, 512, 1024, 3)
    assert G.num_ws == 18
    assert G.synthesis.b64.conv1.weight.shape == (512, 512, 3, 3)
    assert G.synthesis.b1024.conv1.weight.shape == (32, 32, 3, 3)  # 32768 // 1024


def test_init_kwargs_are_json_and_rebuild_the_same_network():
    G = tiny_generator(architecture="resnet", conv_clamp=256, num_fp16_res=2)
    kwargs = json.loads(json.dumps(G.init_kwargs))
    assert kwargs["synthesis_kwargs"]["resample_filter"] == [1, 3, 3, 1]
    assert kwargs["mapping_kwargs"]["lr_multiplier"] == 0.01 and kwargs["mapping_kwargs"]["label_concat"] is False
    H = Generator(**kwargs).eval()
    H.load_state_dict(G.state_dict(), strict=True)
    z = torch.randn(2, 16)
    assert torch.equal(H(z), G(z))


def test_unknown_kwargs_are_rejected():
    with pytest.raises(NetworkConfigError, match="channel_bse"):
        Generator(**TINY, synthesis_kwargs={"channel_bse": 1})
    with pytest.raises(NetworkConfigError, match="architecture"):
        Generator(**TINY, synthesis_kwargs={"architecture": "unet"})


def test_truncation_psi_zero_gives_w_avg_and_cutoff_limits_it():
    G = tiny_generator()
    z = torch.randn(3, 16)
    w = G.mapping(z)
    w0 = G.mapping(z, truncation_psi=0)
    assert torch.allclose(w0, G.mapping.w_avg.expand_as(w0))
    half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    # w_avg.lerp(w, 0.5) against (w + w_avg) / 2: a few roundings of values of size |w| + |w_avg| each.
    assert bool(((half[:, :3] - (w[:, :3] + G.mapping.w_avg) / 2).abs() <= 4 * U * (w[:, :3].abs() + G.mapping.w_avg.abs())).all())
    assert torch.equal(half[:, 3:], w[:, 3:])


def test_w_avg_moves_toward_the_batch_mean_only_with_update_emas():
    G = tiny_generator()
    before = G.mapping.w_avg.clone()
    z = torch.randn(4, 16)
    G.mapping(z)
    assert torch.equal(G.mapping.w_avg, before)
    w = G.mapping(z, update_emas=True)[:, 0]
    # lerp against the written-out average, and a mean of 4 rows summed in another order: a few u of the sizes.
    assert bool(((G.mapping.w_avg - (before * 0.995 + w.mean(0) * 0.005)).abs() <= 8 * U * (before.abs() + w.abs().max(0).values)).all())


def test_noise_modes():
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, 16))
    const = G.synthesis(ws, noise_mode="const")
    assert torch.equal(const, G.synthesis(ws, noise_mode="const"))
    assert not torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    none = G.synthesis(ws, noise_mode="none")
    assert not torch.allclose(none, const, atol=1e-3)
    with torch.no_grad():
        for name, tensor in G.named_parameters():
            if name.endswith("noise_strength"):
                tensor.zero_()
    assert torch.equal(G.synthesis(ws, noise_mode="const"), none)  # adding 0 * noise is exact: equal by construction
    with pytest.raises(NetworkConfigError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_fused_and_per_sample_modulation_agree():
    G = tiny_generator(architecture="resnet", conv_clamp=1.0)
    ws = G.mapping(torch.randn(3, 16))
    fused = G.synthesis(ws)
    G.train()  # training mode scales activations instead of fusing the batch into groups
    assert_relative_close(G.synthesis(ws), fused, parity_tolerance(G.synthesis))  # the same layers, other summation orders


def test_fp16_blocks_run_in_fp32_on_cpu():
    G = tiny_generator(num_fp16_res=2)
    H = tiny_generator(num_fp16_res=0)
    ws = H.mapping(torch.randn(2, 16))
    assert G.synthesis.b16.use_fp16 and not G.synthesis.b8.use_fp16
    assert torch.equal(G.synthesis(ws), H.synthesis(ws))


def test_modulated_conv2d_matches_per_sample_convolution():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(2, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(2, 4)
    out = modulated_conv2d(x, weight, styles, padding=1)
    for n in range(2):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        # One convolution summing 4 x 3 x 3 products after a demodulation summing as many: two layers' rounding.
        assert_relative_close(out[n : n + 1], torch.nn.functional.conv2d(x[n : n + 1], w, padding=1), 2 * network_error(4 * 3 * 3, 2))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate, kernel", [(True, 3), (False, 1), (True, 1)])
def test_modulated_conv2d_gain_scales_the_output_before_the_noise(fused, demodulate, kernel):
    """gain (applied to the small per-sample factors) gives gain * output + noise, in every form of the convolution."""
    torch.manual_seed(2)
    x, weight, styles = torch.randn(2, 4, 6, 6), torch.randn(5, 4, kernel, kernel), torch.randn(2, 4)
    noise = torch.randn(6, 6)
    kwargs = dict(padding=kernel // 2, demodulate=demodulate, fused_modconv=fused)
    plain = modulated_conv2d(x, weight, styles, **kwargs)
    scaled = modulated_conv2d(x, weight, styles, noise=noise, gain=1.7, **kwargs)
    # The gain scales the small per-sample factors instead of the output: the same sums in other orders.
    assert_relative_close(scaled, 1.7 * plain + noise, 2 * network_error(4 * kernel * kernel, 2))


def test_unfused_1x1_modulated_conv2d_keeps_channels_last_and_its_gradient_layout():
    """toRGB's unfused form (a batched matrix product) gives the convolution's result from either memory format, and
    a channels_last input gets a channels_last gradient (no layout conversion in the backward pass)."""
    torch.manual_seed(3)
    x, weight, styles = torch.randn(2, 8, 5, 7), torch.randn(3, 8, 1, 1), torch.randn(2, 8)
    fused = modulated_conv2d(x, weight, styles, demodulate=False)
    last = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    unfused = modulated_conv2d(last, weight, styles, demodulate=False, fused_modconv=False)
    # A batched matrix product against a grouped convolution: 8 products per output, summed in other orders.
    assert_relative_close(unfused.detach(), fused, 2 * network_error(8, 1))
    assert_relative_close(modulated_conv2d(x, weight, styles, demodulate=False, fused_modconv=False), fused, 2 * network_error(8, 1))
    unfused.square().sum().backward()
    assert last.grad.is_contiguous(memory_format=torch.channels_last)


def test_ada_label_embedding_and_missing_label():
    G = Generator(16, 5, 16, 8, 3, synthesis_kwargs=TINY_SYNTHESIS).eval()
    assert G.mapping.embed.weight.shape == (16, 5) and G.mapping.fc0.weight.shape == (16, 32)
    assert G(torch.randn(2, 16), torch.eye(5)[:2]).shape == (2, 3, 8, 8)
    with pytest.raises(NetworkConfigError, match=r"c must have shape \[N, 5\]"):
        G(torch.randn(2, 16))


def test_label_concat_is_the_original_tf_conditioning():
    G = Generator(16, 5, 16, 8, 3, mapping_kwargs={"label_concat": True}, synthesis_kwargs=TINY_SYNTHESIS).eval()
    keys = set(G.state_dict())
    assert "mapping.label_concat.weight" in keys and not any(k.startswith("mapping.embed") for k in keys)
    assert G.mapping.label_concat.weight.shape == (5, 16) and G.mapping.fc0.weight.shape == (16, 32)
    z, c = torch.randn(2, 16), torch.eye(5)[[1, 3]]
    x = normalize_2nd_moment(torch.cat([z, c @ G.mapping.label_concat.weight], dim=1))
    for i in range(8):
        fc = getattr(G.mapping, f"fc{i}")
        x = torch.nn.functional.leaky_relu(x @ (fc.weight * 0.01 / fc.weight.shape[1] ** 0.5).T + fc.bias * 0.01, 0.2) * 2**0.5
    assert_relative_close(G.mapping(z, c)[:, 0].detach(), x.detach(), parity_tolerance(G.mapping))  # the mapping written out by hand
    assert json.loads(json.dumps(G.init_kwargs))["mapping_kwargs"]["label_concat"] is True


@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_up_to_a_resolution_is_the_full_pass_own_running_image(fused):
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(1)), None)
    ws = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(2))  # distinct rows
    running = {}
    hooks = [getattr(G.synthesis, f"b{res}").register_forward_hook(
        lambda block, inputs, output: running.__setitem__(block.resolution, output[1].clone()))
        for res in G.synthesis.block_resolutions]
    full = G.synthesis(ws, fused_modconv=fused)
    for hook in hooks:
        hook.remove()
    for res in (4, 8, 16):
        image = G.synthesis(ws, fused_modconv=fused, resolution=res)
        assert image.shape == (2, 3, res, res) and torch.equal(image, running[res])
    assert torch.equal(G.synthesis(ws, fused_modconv=fused, resolution=32), full)


def test_synthesis_up_to_a_resolution_reads_only_its_rows():
    G = tiny_generator()
    assert [G.synthesis.rows_read(res) for res in (4, 8, 16, 32, None)] == [2, 4, 6, 8, 8]
    ws = G.mapping(torch.randn(1, 16), None).detach().requires_grad_(True)
    G.synthesis(ws, resolution=16).square().sum().backward()
    read = G.synthesis.rows_read(16)
    assert (ws.grad[0, :read].abs().sum(dim=1) > 0).all()
    assert torch.equal(ws.grad[0, read:], torch.zeros_like(ws.grad[0, read:]))


def test_synthesis_stops_only_at_a_block_of_a_skip_network():
    with pytest.raises(NetworkConfigError, match="block resolutions"):
        tiny_generator().synthesis(torch.zeros(1, 8, 16), resolution=12)
    resnet = tiny_generator(architecture="resnet")
    with pytest.raises(NetworkConfigError, match="skip architecture"):
        resnet.synthesis(torch.zeros(1, resnet.num_ws, 16), resolution=16)
    assert resnet.synthesis(torch.zeros(1, resnet.num_ws, 16), resolution=32).shape == (1, 3, 32, 32)
