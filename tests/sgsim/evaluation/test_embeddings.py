"""The fast embedding path computes what encoding each clip alone with the encoder as given computes."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from encoders.registry import build_audio_encoder
from sgsim.audio import load_centred_window
from sgsim.datasets import read_esc50
from sgsim.evaluation.embeddings import embed_dataset, inference_copy


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
