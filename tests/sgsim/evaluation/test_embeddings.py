"""The fast embedding path computes what encoding each clip alone with the encoder as given computes."""

from __future__ import annotations

import dataclasses
import functools
import shutil

import pytest
import torch
from torch import nn

from encoders.registry import build_audio_encoder
from sgsim.audio import load_centred_window
from sgsim.datasets import read_esc50
from sgsim.evaluation.embeddings import embed_dataset, inference_copy
from sgsim.errors import SgsimNotice


def with_telling_batch_norms(encoder: nn.Module) -> nn.Module:
    """Seeded random weights and batch-norm statistics far from (0, 1), so that folding them wrongly shows."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
    return encoder.eval()


def batch_norms(module: nn.Module) -> int:
    return sum(isinstance(child, nn.modules.batchnorm._BatchNorm) for child in module.modules())


@pytest.mark.parametrize("name", ["sgsim-resnet18", "wav2clip", "audioclip-partial"])
def test_inference_copy_folds_batch_norms_and_leaves_the_encoder_alone(name):
    torch.manual_seed(0)
    encoder = with_telling_batch_norms(build_audio_encoder(name)).train()
    before = {key: value.clone() for key, value in encoder.state_dict().items()}
    clips = 0.1 * torch.randn(2, encoder.sample_rate, generator=torch.Generator().manual_seed(1))
    if not encoder.mono:
        clips = clips[:, None]
    fast = inference_copy(encoder)
    assert type(fast) is type(encoder) and batch_norms(fast) < batch_norms(encoder) / 10
    with torch.no_grad():
        expected = encoder.eval().encode(clips, encoder.sample_rate)
        got = fast.encode(clips, encoder.sample_rate)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    encoder.train()  # the copy changed neither the encoder's mode nor its weights
    assert encoder.training and all(torch.equal(value, before[key]) for key, value in encoder.state_dict().items())


def test_embedded_dataset_equals_each_real_clip_encoded_alone(shared_data, tmp_path):
    root = tmp_path / "esc50"
    shutil.copytree(shared_data / "esc50-mini", root)
    dataset = read_esc50(root)
    torch.manual_seed(0)
    encoder = with_telling_batch_norms(build_audio_encoder("sgsim-resnet18"))
    embedded = embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0)
    assert embedded.encoded == len(dataset.clips) == 10
    with torch.no_grad():
        expected = torch.cat([
            encoder.encode(torch.from_numpy(load_centred_window(clip.path, 44100, True, encoder.input_seconds)), 44100)
            for clip in dataset.clips
        ])
    torch.testing.assert_close(embedded.embeddings, expected, rtol=1e-5, atol=1e-6)


@functools.lru_cache(maxsize=None)
def fp32_and_bf16_embeddings(name: str, shared_data) -> tuple[torch.Tensor, torch.Tensor]:
    """The first five esc50-mini clips (five classes) embedded by a seeded encoder `name` at fp32 and at bf16 (computed
    once per encoder: two tests read them; AudioCLIP's bf16 is emulated on most CPUs, about 2 s a clip)."""
    dataset = read_esc50(shared_data / "esc50-mini")
    dataset = dataclasses.replace(dataset, clips=dataset.clips[:5])
    assert len({clip.label for clip in dataset.clips}) == 5
    torch.manual_seed(0)
    encoder = with_telling_batch_norms(build_audio_encoder(name))
    fp32 = embed_dataset(encoder, dataset, None, batch_size=5, workers=0).embeddings
    with pytest.warns(SgsimNotice, match="emulated"):  # tests run as on a CPU without native bf16 (tests/sgsim/conftest.py)
        bf16 = embed_dataset(encoder, dataset, None, batch_size=5, workers=0, precision="bf16").embeddings
    assert not torch.equal(bf16, fp32)  # it did run reduced
    return fp32, bf16


@pytest.mark.parametrize("name", ["sgsim-resnet18", "wav2clip", "audioclip-partial"])
def test_bf16_embeddings_of_real_clips_stay_within_cosine_0999_of_fp32(name, shared_data):
    """EMBEDDING_PRECISIONS' tolerance. The front ends stay fp32 under autocast: AudioCLIP's filterbank in bf16 fell to 0.989."""
    fp32, bf16 = fp32_and_bf16_embeddings(name, shared_data)
    assert torch.nn.functional.cosine_similarity(bf16, fp32).min() >= 0.999


@pytest.mark.parametrize("name", ["wav2clip", "audioclip-partial"])
def test_bf16_embedding_of_a_clip_is_nearest_to_its_own_fp32_embedding(name, shared_data):
    """bf16 moves no clip toward another: the errors are small beside the differences between clips. (sgsim-resnet18
    with random weights maps all clips within cosine 0.9999 of each other, as close as bf16's rounding: it cannot show this.)"""
    fp32, bf16 = fp32_and_bf16_embeddings(name, shared_data)
    assert (bf16 @ fp32.T).argmax(-1).tolist() == list(range(len(fp32)))


def test_unknown_precision_is_refused_before_anything_is_cached(shared_data, tmp_path):
    from sgsim.errors import SgsimError

    dataset = read_esc50(shared_data / "esc50-mini")
    with pytest.raises(SgsimError, match="unknown precision 'mixed'; choose one of fp32, bf16"):
        embed_dataset(build_audio_encoder("sgsim-resnet18"), dataset, tmp_path / "cache", precision="mixed")
    assert not (tmp_path / "cache").exists()
