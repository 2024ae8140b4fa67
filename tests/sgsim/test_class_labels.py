"""Class labels for conditional generators: a seed source is drawn with the one-hot label of the class asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sgsim.components import load_generator
from sgsim.editing import Editor, Target
from sgsim.editing.sources import SEED_TRUNCATION
from sgsim.errors import SgsimError

CLASSES = 3
SEED = 3


@pytest.fixture(scope="module")
def conditional_generator(tmp_path_factory):
    """A 32 px generator with a 3-class ADA label embedding, and its file written by stylegan2.save_generator."""
    from stylegan2 import save_generator
    from stylegan2.networks import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        G = Generator(z_dim=32, c_dim=CLASSES, w_dim=32, img_resolution=32, img_channels=3,
                      mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    G.eval().requires_grad_(False)
    return G, save_generator(G, tmp_path_factory.mktemp("conditional") / "conditional.safetensors")


@pytest.fixture(scope="module")
def editor(conditional_generator, encoder_checkpoint_file, tiny_clip_space) -> Editor:
    return Editor.from_pretrained(str(conditional_generator[1]), "sgsim-resnet18", encoder_checkpoint=encoder_checkpoint_file, device="cpu")


def direct_image(G, seed: int, class_index: int) -> torch.Tensor:
    """G(z, one_hot(class)) at the seed-source truncation, computed here without sgsim."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.eye(CLASSES)[[class_index]]
    with torch.no_grad():
        return G(z, c, truncation_psi=SEED_TRUNCATION, noise_mode="const")[0]


def test_each_class_draws_its_own_image_of_a_seed(editor, conditional_generator):
    G = conditional_generator[0]
    images = [editor.render(editor.source_latent(SEED, class_index=k)[None])[0] for k in range(CLASSES)]
    for k, image in enumerate(images):
        torch.testing.assert_close(image, direct_image(G, SEED, k).clamp(-1, 1), atol=1e-5, rtol=0)  # the Editor renders clamped
    for a in range(CLASSES):
        for b in range(a + 1, CLASSES):
            assert (images[a] - images[b]).abs().mean() > 0.01, (a, b)


def test_an_edit_starts_from_the_class_image_and_records_the_class(editor, conditional_generator, shared_data):
    result = editor.edit(SEED, Target(shared_data / "audio" / "raining.wav"), steps=2, class_index=np.int64(1))
    # EditResult images are clamped to [-1, 1] (as documented); the generator's own output overshoots it.
    torch.testing.assert_close(result.source_image, direct_image(conditional_generator[0], SEED, 1).clamp(-1, 1), atol=1e-5, rtol=0)
    assert result.settings["class_index"] == 1 and type(result.settings["class_index"]) is int


def test_a_missing_impossible_or_misplaced_class_is_an_error(editor, tiny_generator_file, shared_data):
    with pytest.raises(SgsimError, match=r"conditional with 3 classes: pass a class index 0\.\.2 .*--class N"):
        editor.edit(SEED, Target(shared_data / "audio" / "fire.wav"), steps=1)
    for bad in (3, -1, True, 1.0):
        with pytest.raises(SgsimError, match=r"is not a class of this generator: it has 3 classes, pass 0\.\.2"):
            editor.source_latent(SEED, class_index=bad)
    w = editor.source_latent(SEED, class_index=0)
    with pytest.raises(SgsimError, match="picks the label of a seed source only"):
        editor.source_latent(w, class_index=0)
    unconditional = Editor(load_generator(tiny_generator_file).component, editor.audio_encoder, editor.clip, device="cpu")
    with pytest.raises(SgsimError, match="this generator is unconditional"):
        unconditional.source_latent(SEED, class_index=0)
    assert unconditional.source_latent(SEED).shape == (8, 32)


@pytest.fixture(scope="module")
def run(run, conditional_generator):
    """The shared `run` (tests/sgsim/conftest.py) on the conditional generator, unless a test names another."""
    return lambda *args, generator=None: run(*args, generator=generator or conditional_generator[1])


def test_generate_and_edit_draw_the_class_asked_for(run, conditional_generator, shared_data, tmp_path):
    sound = str(shared_data / "audio" / "raining.wav")
    for k in (0, 2):
        assert run("generate", "--seed", str(SEED), "--class", str(k), "--out", str(tmp_path / f"c{k}")).exit_code == 0
    pictures = [np.asarray(Image.open(tmp_path / f"c{k}" / "seed0003.png")) for k in (0, 2)]
    assert np.abs(pictures[0].astype(int) - pictures[1]).mean() > 1
    expected = (direct_image(conditional_generator[0], SEED, 2).permute(1, 2, 0) * 127.5 + 128).clamp(0, 255)
    assert np.abs(pictures[1].astype(float) - expected.numpy()).max() <= 1  # uint8 rounding
    edited = run("edit", "--audio", sound, "--seed", str(SEED), "--class", "2", "--out", str(tmp_path / "e"))
    assert edited.exit_code == 0, edited.output
    assert (tmp_path / "e" / "source.png").read_bytes() == (tmp_path / "c2" / "seed0003.png").read_bytes()
    assert json.loads((tmp_path / "e" / "run.json").read_text())["settings"]["class_index"] == 2


@pytest.mark.parametrize("args, unconditional, expected", [
    (["edit", "--seed", "1"], False, "conditional with 3 classes: pass a class index 0..2"),
    (["edit", "--seed", "1", "--class", "3"], False, "is not a class of this generator: it has 3 classes"),
    (["generate", "--seed", "1", "--seed", "2", "--class", "7"], False, "is not a class of this generator: it has 3 classes"),
    (["generate", "--seed", "1"], False, "conditional with 3 classes"),
    (["generate", "--seed", "1", "--class", "0"], True, "this generator is unconditional"),
    (["edit", "--seed", "1", "--class", "-1"], False, "not in the range"),
])
def test_bad_class_is_one_line_and_writes_nothing(run, tiny_generator_file, shared_data, tmp_path, args, unconditional, expected, one_error_line):
    audio = ["--audio", str(shared_data / "audio" / "fire.wav")] if args[0] == "edit" else []
    result = run(*args, *audio, "--out", str(tmp_path / "out"), generator=tiny_generator_file if unconditional else None)
    assert expected in one_error_line(result)
    assert list(tmp_path.iterdir()) == []
