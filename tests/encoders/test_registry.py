"""The encoder registry: names to ready encoders, strict and safe checkpoint loading."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

import checkpoints
from encoders import AudioEncoder, EncoderError, available, load_audio_encoder
from encoders.registry import ENCODERS, build_audio_encoder

NAMES = ["sgsim-resnet18", "sgsim-resnet50", "audioclip-partial", "audioclip-full", "wav2clip"]


@pytest.fixture(scope="module")
def resnet18_weights(random_weights):
    return random_weights(build_audio_encoder("sgsim-resnet18").state_dict(), 3)


def save(tmp_path, content, name="encoder.pth"):
    path = tmp_path / name
    torch.save(content, path)
    return path


def test_available_lists_every_encoder_with_its_weights_and_clip_space():
    infos = {info.name: info for info in available()}
    from sgsim.worlds import ENCODER_NAME as WORLD_ENCODER  # registered too once a test in this process loaded the world

    assert [name for name in infos if name != WORLD_ENCODER] == NAMES
    assert infos["sgsim-resnet18"].weights == "sgsim-resnet18"
    assert infos["sgsim-resnet50"].weights is None
    assert {infos[n].clip_model for n in ("sgsim-resnet18", "sgsim-resnet50", "wav2clip")} == {"ViT-B-32-quickgelu"}
    assert {infos[n].clip_model for n in ("audioclip-partial", "audioclip-full")} == {"RN50-quickgelu"}
    assert all(info.description for info in infos.values())


def test_released_weights_names_are_in_the_checkpoints_manifest():
    for info in available():
        if info.weights is not None:
            assert checkpoints.entry(info.weights).kind == "audio-encoder"


@pytest.mark.parametrize("name", NAMES)
def test_each_builder_gives_an_encoder_in_the_registered_clip_space(name):
    module = ENCODERS[name].builder.partition(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    encoder = build_audio_encoder(name)
    assert isinstance(encoder, AudioEncoder) and encoder.name == name
    assert encoder.clip_model == ENCODERS[name].clip_model


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(EncoderError, match="unknown audio encoder 'sgsim'; choose one of sgsim-resnet18, sgsim-resnet50"):
        load_audio_encoder("sgsim")


def test_encoder_without_published_weights_asks_for_a_checkpoint():
    with pytest.raises(EncoderError, match="no published weights; pass checkpoint="):
        load_audio_encoder("sgsim-resnet50")


def test_released_weights_come_from_the_cache(tmp_path, monkeypatch, resnet18_weights):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path))
    with pytest.raises(checkpoints.MissingWeightsError, match="sgsim weights download sgsim-resnet18"):
        load_audio_encoder("sgsim-resnet18")
    target = checkpoints.weights_dir() / checkpoints.entry("sgsim-resnet18").filename
    target.parent.mkdir(parents=True)
    torch.save(resnet18_weights, target)
    encoder = load_audio_encoder("sgsim-resnet18")
    torch.testing.assert_close(encoder.state_dict()["conv.weight"], resnet18_weights["conv.weight"])


def test_checkpoint_loads_with_data_parallel_prefix_in_eval_mode(tmp_path, resnet18_weights):
    path = save(tmp_path, {f"module.{key}": value for key, value in resnet18_weights.items()})
    encoder = load_audio_encoder("sgsim-resnet18", checkpoint=path, device="cpu")
    assert not encoder.training and encoder.device == torch.device("cpu")
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, resnet18_weights[key], rtol=0, atol=0)


def test_training_checkpoint_container_is_unwrapped(tmp_path, resnet18_weights):
    path = save(tmp_path, {"state_dict": resnet18_weights, "epoch": 57})
    encoder = load_audio_encoder("sgsim-resnet18", checkpoint=path)
    torch.testing.assert_close(encoder.state_dict()["feature_extractor.fc.bias"], resnet18_weights["feature_extractor.fc.bias"])


def test_wrong_keys_are_refused(tmp_path, resnet18_weights):
    renamed = {key.replace("feature_extractor.", "backbone."): value for key, value in resnet18_weights.items()}
    path = save(tmp_path, renamed)
    with pytest.raises(EncoderError, match=r"is not a sgsim-resnet18 checkpoint: 122 keys missing .* 122 unexpected"):
        load_audio_encoder("sgsim-resnet18", checkpoint=path)


def test_wrong_shapes_are_refused(tmp_path, resnet18_weights):
    path = save(tmp_path, resnet18_weights)
    with pytest.raises(EncoderError, match=f"{path} is not a sgsim-resnet50 checkpoint"):
        load_audio_encoder("sgsim-resnet50", checkpoint=path)
    narrow = dict(resnet18_weights, **{"feature_extractor.fc.weight": torch.zeros(256, 512)})
    with pytest.raises(EncoderError, match=r"1 of the wrong shape \(feature_extractor.fc.weight\)"):
        load_audio_encoder("sgsim-resnet18", checkpoint=save(tmp_path, narrow, "narrow.pth"))


class Payload:
    """A pickled object that runs code when unpickled, as a hostile checkpoint would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_hostile_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = save(tmp_path, {"conv.weight": torch.zeros(3, 1, 3, 3), "payload": Payload(marker)})
    with pytest.raises(EncoderError, match="weights_only loading refuses"):
        load_audio_encoder("sgsim-resnet18", checkpoint=path)
    assert not marker.exists()


def test_unreadable_files_are_named(tmp_path, resnet18_weights):
    (tmp_path / "empty.pth").write_bytes(b"")
    full = save(tmp_path, resnet18_weights, "full.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(full[: len(full) // 2])
    (tmp_path / "notes.pth").write_text("not a checkpoint\n")
    for name in ("empty.pth", "truncated.pth", "notes.pth"):
        with pytest.raises(EncoderError, match=f"{tmp_path / name} is not a readable PyTorch checkpoint"):
            load_audio_encoder("sgsim-resnet18", checkpoint=tmp_path / name)
    with pytest.raises(EncoderError, match="no such checkpoint file"):
        load_audio_encoder("sgsim-resnet18", checkpoint=tmp_path / "missing.pth")
    with pytest.raises(EncoderError, match="not a state dict of tensors"):
        load_audio_encoder("sgsim-resnet18", checkpoint=save(tmp_path, [1, 2, 3], "list.pth"))
