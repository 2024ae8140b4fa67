"""sgsim.components and Editor.from_pretrained: names and paths become loaded components with their weights
files; the preset follows what the generator is (manifest name, recorded checksum, training set), with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sgsim import components
from sgsim.editing import Editor, Target
from sgsim.editing.presets import FACES, SCENES, preset_choice
from sgsim.editing.sources import ImageSource, LatentSource, SeedSource, as_source
from sgsim.errors import SgsimError
from stylegan2 import load_generator, save_generator
from stylegan2.errors import NetworkConfigError

NVIDIA_PICKLE = Path(__file__).resolve().parents[1] / "data" / "stylegan2" / "ada_skip32.pkl"  # trained on "sgsim-fixture"


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    return tmp_path


def test_loaders_return_frozen_components_and_their_files(tiny_generator_file):
    loaded = components.load_generator(tiny_generator_file)
    assert loaded.weights == tiny_generator_file
    assert not loaded.component.training and not any(p.requires_grad for p in loaded.component.parameters())


def test_the_editor_takes_loaded_networks_and_points_names_to_from_pretrained(editor):
    with pytest.raises(SgsimError, match="got a name or nothing for generator; load them by name with Editor.from_pretrained"):
        Editor("ffhq", editor.audio_encoder, editor.clip)
    same = Editor(editor.generator, editor.audio_encoder, editor.clip, device="cpu")
    assert same.weight_files == {} and same.preset == SCENES


def test_a_generator_is_recognised_by_name_by_its_cached_file_and_by_checksum(cache):
    from checkpoints import import_file

    assert components.manifest_generator("metfaces") == "metfaces"
    assert components.manifest_generator(NVIDIA_PICKLE) is None  # not in this cache
    cached = import_file(NVIDIA_PICKLE, "ffhq")  # as if it were the FFHQ weights: the cache records its checksum
    copy = shutil.copy(NVIDIA_PICKLE, cache / "renamed.pkl")
    assert components.manifest_generator(cached) == components.manifest_generator(copy) == "ffhq"
    other = cache / "other.pkl"
    other.write_bytes(NVIDIA_PICKLE.read_bytes()[:-1] + b"\x00")  # same size, other bytes
    assert components.manifest_generator(other) is None


def test_from_pretrained_picks_the_face_preset_for_the_ffhq_file_under_any_name(cache, encoder_checkpoint_file, tiny_clip_space):
    from checkpoints import import_file

    import_file(NVIDIA_PICKLE, "ffhq")
    copy = shutil.copy(NVIDIA_PICKLE, cache / "my-generator.pkl")
    editor = Editor.from_pretrained(copy, "sgsim-resnet18", encoder_checkpoint=encoder_checkpoint_file, device="cpu")
    assert editor.preset == FACES and editor.preset_name == "ffhq"
    assert editor.preset_reason == "the generator is the manifest's 'ffhq'"
    assert editor.weight_files["generator"] == Path(copy)


def test_the_training_set_a_file_names_picks_the_preset_and_survives_a_convert(tmp_path, editor):
    G = load_generator(NVIDIA_PICKLE)
    assert G.metadata == {"dataset": "sgsim-fixture"}
    unknown = preset_choice(None, NVIDIA_PICKLE, G.metadata)
    assert unknown.preset == SCENES
    assert unknown.reason.startswith(f"no preset for the generator {str(NVIDIA_PICKLE)!r} (trained on 'sgsim-fixture'): scene weights")
    G.metadata = {"dataset": "ffhq-1024"}  # as NVIDIA's ffhq.pkl says: training_set_kwargs.path '.../ffhq-1024.zip'
    converted = load_generator(save_generator(G, tmp_path / "converted.safetensors"))
    assert converted.metadata == {"dataset": "ffhq-1024"}
    faces = Editor(converted, editor.audio_encoder, editor.clip, device="cpu")
    assert faces.preset == FACES and faces.preset_reason == "the generator's file says it was trained on 'ffhq-1024'"


def test_asked_presets_and_unknown_generators_say_why(tmp_path):
    assert preset_choice("ffhq", tmp_path / "g.pkl").reason == "preset 'ffhq' was asked for"
    assert preset_choice(None, "stylegan2-ffhq-config-f").preset == FACES
    assert preset_choice(None, "stylegan2-church-config-f").name == "landscape"  # by the manifest's domain: scenes
    assert preset_choice(None, "afhqcat").reason == ("no preset for the generator 'afhqcat' (it draws animals; its file names no training set): "
                                                     "scene weights without the identity loss; pass preset='ffhq' for a face model")
    assert preset_choice(None, object()).reason.startswith("the generator is not recognised (its file names no training set)")
    assert not preset_choice(None, object()).recognised and preset_choice(None, "metfaces").recognised


def test_the_preset_and_its_reason_are_recorded_with_the_weights(editor, shared_data):
    result = editor.edit(0, Target(shared_data / "audio" / "fire.wav"), steps=1)
    assert result.settings["preset_name"] == "landscape" and result.settings["preset_reason"] == editor.preset_reason
    assert result.settings["weights"] == {"clip": 1.0, "latent": 0.002, "id": 0.0}


def test_sources_are_typed_and_the_shorthands_cannot_be_mistaken(editor, tmp_path):
    w = editor.source_latent(5)
    assert as_source(5) == SeedSource(5) and as_source("a.png") == ImageSource("a.png")
    assert isinstance(as_source(np.zeros(32)), LatentSource)
    assert torch.equal(editor.source_latent(SeedSource(5)), w) and torch.equal(editor.source_latent(LatentSource(w)), w)
    image = editor.render(w[None])
    with pytest.raises(SgsimError, match="a latent must be W"):  # a tensor is a latent, whatever its shape
        editor.source_latent(image)
    with pytest.warns(UserWarning, match="inverting without LPIPS"):
        inverted = editor.source_latent(ImageSource(image), invert_steps=2)
    assert inverted.shape == w.shape
    with pytest.raises(SgsimError, match="source must be"):
        as_source(1.5)


def test_a_latent_source_brings_its_noise(editor, shared_data):
    names = [name for name, _ in editor.generator.synthesis.named_buffers() if name.endswith("noise_const")]
    noise = {name: torch.zeros_like(editor.generator.synthesis.get_buffer(name)) for name in names}
    w = editor.source_latent(3)
    result = editor.edit(LatentSource(w, noise), Target(shared_data / "audio" / "fire.wav"), steps=1, strengths=(0.0,))
    assert set(result.noise) == set(names) and all((value == 0).all() for value in result.noise.values())
    wrong = {names[0]: torch.zeros(3, 3)}
    with pytest.raises(NetworkConfigError, match="shaped"):  # the source's noise is swapped into the generator
        editor.edit(LatentSource(w, wrong), Target(shared_data / "audio" / "fire.wav"), steps=1)
