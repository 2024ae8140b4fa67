"""The CLIP wrapper: a tiny open_clip model saved in open_clip's format and loaded through load_clip."""

from __future__ import annotations

import json
import logging

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from checkpoints.errors import MissingWeightsError
from encoders import clip as clip_module
from encoders.clip import ClipModel, load_clip, resize_and_center_crop
from encoders.errors import EncoderError
from encoders.registry import load_clip_for
from tolerances import assert_relative_close, parity_tolerance

# docs/reference.md#tiny-clip-for-tests: a CLIP that builds in milliseconds; vocab 49408 so the bundled BPE tokenizer fits.
TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_NAME = "sgsim-test-tiny-clip-32d"  # not tests/sgsim's 512-d "sgsim-test-tiny-clip": one open_clip registry per process


def assert_same_embedding(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """The same weights through the same code in one process sum in the same order: equal by construction."""
    assert torch.equal(ours, reference)


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory) -> str:
    config = tmp_path_factory.mktemp("clip_config") / f"{TINY_NAME}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    return TINY_NAME


@pytest.fixture(scope="module")
def tiny_weights(tiny_name, random_weights) -> dict[str, torch.Tensor]:
    template = open_clip.create_model(tiny_name, pretrained=None).state_dict()
    weights = random_weights(template, seed=3)
    weights["logit_scale"] = torch.tensor(4.6052)
    return weights


@pytest.fixture(scope="module")
def tiny_file(tiny_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip_weights") / "tiny.safetensors"
    save_file(tiny_weights, str(path))
    return path


@pytest.fixture(scope="module")
def clip(tiny_name, tiny_file) -> ClipModel:
    return load_clip(tiny_name, pretrained=str(tiny_file))


def test_loads_the_exact_weights(clip, tiny_weights):
    loaded = clip.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in tiny_weights.items())
    assert (clip.embed_dim, clip.image_size) == (32, 32)


def test_encode_text_shape_and_unit_norm(clip):
    emb = clip.encode_text(["the sound of rain", "a dog barking", "fire crackling"])
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(emb[0], emb[1])


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (17, 17), (48, 80)])
def test_encode_image_any_resolution_unit_norm_and_gradient(clip, size):
    images = (torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_(True)
    emb = clip.encode_image(images)
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    emb[:, 0].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in clip.model.parameters())


def test_encode_image_preprocessing_matches_a_hand_computed_pipeline(clip):
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2  # some out of range
    pixels = (images.clamp(-1, 1) + 1) / 2
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    expected = F.normalize(clip.model.encode_image((pixels - mean) / std), dim=-1)
    # The same network; the hand-written scaling rounds differently by an ulp or two of each pixel.
    assert_relative_close(clip.encode_image(images), expected, parity_tolerance(clip.model.visual))


def test_preprocessing_without_the_clamp_fails_the_comparison(clip):
    """Out-of-range pixels left unclamped: a mistake the bound of the test above must see."""
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    unclamped = F.normalize(clip.model.encode_image(((images + 1) / 2 - mean) / std), dim=-1)
    with pytest.raises(AssertionError, match="relative L2 error"):
        assert_relative_close(clip.encode_image(images), unclamped, parity_tolerance(clip.model.visual))


def test_resize_keeps_a_constant_image_constant_and_crops_the_centre():
    flat = torch.full((1, 3, 100, 100), 0.3)
    torch.testing.assert_close(resize_and_center_crop(flat, 32), torch.full((1, 3, 32, 32), 0.3))
    wide = torch.zeros(1, 3, 32, 96)
    wide[..., 32:64] = 1.0  # the centre third is white: after a crop to the centre square, all white
    assert resize_and_center_crop(wide, 32).min() == 1.0
    downscaled = resize_and_center_crop(torch.rand(1, 3, 256, 256), 32)
    assert downscaled.shape == (1, 3, 32, 32) and 0 <= downscaled.min() and downscaled.max() <= 1


def test_bad_image_shape_is_an_encoder_error(clip):
    with pytest.raises(EncoderError, match="NCHW RGB"):
        clip.encode_image(torch.zeros(3, 32, 32))


def test_from_open_clip_wraps_a_built_model(tiny_weights):
    model = open_clip.CLIP(embed_dim=32, vision_cfg=TINY_CONFIG["vision_cfg"], text_cfg=TINY_CONFIG["text_cfg"], quick_gelu=True)
    model.load_state_dict(tiny_weights)
    wrapped = ClipModel.from_open_clip(model)
    assert wrapped.encode_text(["rain"]).shape == (1, 32)


def test_audioclip_file_gives_its_clip_part(tiny_name, tiny_weights, clip, tmp_path):
    audioclip = dict(tiny_weights)
    audioclip["audio.fc.weight"] = torch.zeros(4, 8)
    audioclip["audio.fbsp.m"] = torch.zeros(3)
    audioclip["logit_scale_ai"] = torch.tensor(4.6)
    audioclip["logit_scale_at"] = torch.tensor(4.6)
    path = tmp_path / "AudioCLIP-Partial-Training.pt"
    torch.save(audioclip, path)
    loaded = load_clip(tiny_name, pretrained=path)
    assert_same_embedding(loaded.encode_text(["a siren"]), clip.encode_text(["a siren"]))


def test_a_file_for_another_model_is_refused(tiny_name, tiny_weights, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({k: v for k, v in tiny_weights.items() if k != "ln_final.weight"} | {"extra.weight": torch.ones(1)}, path)
    with pytest.raises(EncoderError, match=r"other\.pt does not fit.*1 keys missing \(ln_final\.weight\).*1 unexpected \(extra\.weight\)"):
        load_clip(tiny_name, pretrained=path)


def test_torchscript_file_is_refused_without_running_it(tiny_name, tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(EncoderError, match="TorchScript.*sgsim weights download clip-vit-b-32"):
        load_clip(tiny_name, pretrained=path)


def test_offline_without_cached_weights_fails_fast_naming_the_file(tmp_path, monkeypatch, network_log):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match=r"clip-vit-b-32-openai\.safetensors.*sgsim weights download clip-vit-b-32"):
        load_clip()
    with pytest.raises(MissingWeightsError, match=r"clip-rn50-openai\.safetensors"):
        load_clip("RN50-quickgelu", pretrained="openai")
    assert network_log.connections == [] and network_log.sleeps == []  # open_clip's hub download would retry for a minute


def test_openai_resolves_through_the_manifest_and_cache(tiny_name, tiny_file, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path))
    monkeypatch.setitem(clip_module.OPENAI_WEIGHTS, tiny_name, "clip-vit-b-32")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "clip-vit-b-32-openai.safetensors").write_bytes(tiny_file.read_bytes())
    loaded = load_clip(tiny_name, pretrained="openai")
    assert_same_embedding(loaded.encode_text(["thunder"]), clip.encode_text(["thunder"]))


def test_load_clip_for_names_the_clip_weights_registered_for_each_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty"))
    expected = {
        "sgsim-resnet18": "clip-vit-b-32-openai.safetensors",
        "wav2clip": "clip-vit-b-32-openai.safetensors",
        "audioclip-partial": "AudioCLIP-Partial-Training.pt",
        "audioclip-full": "AudioCLIP-Full-Training.pt",
    }
    for name, filename in expected.items():
        with pytest.raises(MissingWeightsError, match=filename):
            load_clip_for(name)


def test_load_clip_for_takes_other_weights_and_another_clip_model(tiny_name, tiny_file, clip):
    loaded = load_clip_for("sgsim-resnet18", tiny_file, clip_model=tiny_name)
    assert_same_embedding(loaded.encode_text(["a drill"]), clip.encode_text(["a drill"]))


def test_load_clip_for_an_encoder_uses_its_registry_entry(tiny_name, tiny_file, clip, monkeypatch):
    from dataclasses import replace

    from encoders.registry import ENCODERS, build_audio_encoder

    monkeypatch.setitem(ENCODERS, "wav2clip", replace(ENCODERS["wav2clip"], clip_model=tiny_name, clip_weights=str(tiny_file)))
    encoder = build_audio_encoder("wav2clip")
    for target in (encoder, "wav2clip"):
        assert_same_embedding(load_clip_for(target).encode_text(["a bell"]), clip.encode_text(["a bell"]))


def test_an_encoder_built_by_hand_has_no_clip_space():
    from encoders.wav2clip import Wav2ClipEncoder

    encoder = Wav2ClipEncoder()
    assert encoder.name == "Wav2ClipEncoder"
    with pytest.raises(EncoderError, match="built by hand, so its CLIP space is unknown; build it with encoders.registry.build_audio_encoder"):
        load_clip_for(encoder)


@pytest.mark.parametrize("container", ["state_dict", "model"])
def test_clip_files_unwrap_like_encoder_files(tiny_name, tiny_weights, clip, tmp_path, container):
    path = tmp_path / "wrapped.pt"
    torch.save({container: {f"module.{key}": value for key, value in tiny_weights.items()}, "epoch": 3}, path)
    assert_same_embedding(load_clip(tiny_name, pretrained=path).encode_text(["a horn"]), clip.encode_text(["a horn"]))


def test_loading_says_which_weights_it_read_not_that_clip_is_random(tiny_name, tiny_file, caplog):
    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    with caplog.at_level(logging.INFO):
        load_clip(tiny_name, pretrained=str(tiny_file))
        open_clip.create_model(tiny_name, pretrained=None)  # open_clip on its own still warns: only load_clip knows better
    messages = [record.getMessage() for record in caplog.records]
    assert sum("initialized randomly" in m for m in messages) == 1
    assert f"CLIP {tiny_name}: every weight loaded strictly from {tiny_file}" in messages
    assert root.handlers == handlers and root.filters == filters  # the application's logging is left as it was
