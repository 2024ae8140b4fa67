"""Edits at a working resolution: the loop renders the generator's running image of a lower block, only the W+ rows
that block reads move, the returned images stay full size, and the settings say what was used and why."""

from __future__ import annotations

import pytest
import torch

from sgsim.editing import Target
from sgsim.editing.optimise import choose_work_resolution, optimise_latents, working_layers
from sgsim.editing.variables import FreeRows
from sgsim.errors import SgsimError
from stylegan2 import Generator

STEPS = 6


@pytest.fixture(scope="module")
def rain(shared_data):
    return Target(shared_data / "audio" / "raining.wav")


def small_generator(resolution: int, architecture: str = "skip") -> Generator:
    return Generator(8, 0, 8, resolution, 3, mapping_kwargs={"num_layers": 1},
                     synthesis_kwargs={"channel_base": 8192, "channel_max": 4, "architecture": architecture})


def test_auto_stays_at_full_size_until_the_working_resolution_is_measured_to_keep_quality():
    auto = choose_work_resolution("auto", small_generator(1024), torch.device("cpu"))
    assert auto.used is None and "until" in auto.reason


def test_auto_works_at_256_px_on_a_cpu_only_for_a_larger_skip_generator(monkeypatch):
    from sgsim.editing import optimise

    monkeypatch.setattr(optimise, "AUTO_WORK_RESOLUTION_ON_CPU", True)
    large = small_generator(1024)
    auto = choose_work_resolution("auto", large, torch.device("cpu"))
    assert auto.used == 256 and auto.requested == "auto" and "CPU" in auto.reason
    assert choose_work_resolution(None, large, torch.device("cpu")) == auto
    assert choose_work_resolution("auto", large, torch.device("cuda")).used is None
    assert choose_work_resolution("auto", small_generator(256), torch.device("cpu")).used is None
    assert choose_work_resolution("auto", small_generator(512, "resnet"), torch.device("cpu")).used is None
    assert choose_work_resolution("full", large, torch.device("cpu")).used is None
    assert choose_work_resolution("128", large, torch.device("cuda")).used == 128
    assert choose_work_resolution("2048", large, torch.device("cpu")).used is None


@pytest.mark.parametrize("requested, message", [("300", "block resolutions"), ("half", "auto, full or a number")])
def test_a_resolution_the_generator_cannot_stop_at_is_one_clear_error(requested, message):
    with pytest.raises(SgsimError, match=message):
        choose_work_resolution(requested, small_generator(512), torch.device("cpu"))
    with pytest.raises(SgsimError, match="skip architecture"):
        choose_work_resolution("128", small_generator(512, "resnet"), torch.device("cpu"))


def test_a_stylegan3_generator_works_at_full_size_and_refuses_a_lower_block():
    from stylegan2.families import largest_activation
    from stylegan2.networks_stylegan3 import Generator as StyleGAN3

    G = StyleGAN3(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 8, "num_layers": 4})
    assert choose_work_resolution("auto", G, torch.device("cpu")).used is None
    assert choose_work_resolution("32", G, torch.device("cpu")).used is None
    with pytest.raises(SgsimError, match="only StyleGAN2 skip generators"):
        choose_work_resolution("16", G, torch.device("cpu"))
    assert largest_activation(G, None) == largest_activation(G, 32)


def test_the_kept_memory_follows_the_working_block():
    from stylegan2.families import largest_activation

    G = small_generator(64)
    assert largest_activation(G, 16) == G.synthesis.b16.out_channels * 16**2
    assert largest_activation(G) == G.synthesis.b64.out_channels * 64**2


def test_the_gradient_reaches_only_the_rows_the_working_block_reads(editor, rain):
    from sgsim.editing.targets import embed_target

    G = editor.generator
    source = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)), None)
    aim = embed_target(rain, editor.audio_encoder, editor.clip).sound[None]
    variables = FreeRows(source)  # every row free: the rows above the working block must get no gradient at all
    optimise_latents(G, editor.clip, source, aim, steps=2, lr=0.1, weights={"clip": 1.0, "latent": 0.008},
                     variables=variables, work_resolution=16)
    read = G.synthesis.rows_read(16)
    assert (variables.free.grad[0, :read].abs().amax(dim=1) > 0).all()
    assert torch.equal(variables.free.grad[0, read:], torch.zeros_like(variables.free.grad[0, read:]))
    assert working_layers(G, 16, None) == list(range(read)) and working_layers(G, 16, [1, read]) == [1]
    with pytest.raises(SgsimError, match="none of the W"):
        working_layers(G, 16, [read])


def test_an_edit_at_a_working_resolution_keeps_the_rows_above_and_renders_full_size(editor, rain):
    result = editor.edit(0, rain, steps=STEPS, work_resolution=16)
    read = editor.generator.synthesis.rows_read(16)
    moved = (result.edited_latents[0] - result.source_latent).abs().amax(dim=1)
    assert (moved[:read] > 0).all() and torch.equal(moved[read:], torch.zeros(len(moved) - read))
    assert result.images.shape[-2:] == (32, 32)
    assert result.settings["work_resolution"] == {"requested": "16", "used": 16, "reason": "16: asked for"}
    assert result.losses["clip"][-1, 0] < result.losses["clip"][0, 0]
    again = editor.edit(0, rain, steps=STEPS, work_resolution=16)
    assert torch.equal(again.edited_latents, result.edited_latents)


def test_the_default_records_that_it_optimised_at_full_size_and_why(editor, rain):
    settings = editor.edit(0, rain, steps=1).settings["work_resolution"]
    assert settings["requested"] == "auto" and settings["used"] is None and settings["reason"].startswith("auto: ")
