"""Learned sound directions (sgsim.editing.directions, Editor.learn_directions / apply) on tiny networks in their
real formats, guided by real sounds."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgsim.editing import Editor, SoundDirection, Target, load_directions, save_directions
from sgsim.checksums import state_sha256
from sgsim.editing.directions import METADATA_KEY
from sgsim.editing.sources import seed_latent
from sgsim.errors import SgsimError

STEPS = 12
TRAIN_SEEDS = list(range(6))
HOLDOUT = 3


@pytest.fixture(scope="module")
def sounds(shared_data):
    return {name: shared_data / "audio" / f"{name}.wav" for name in ("raining", "fire")}


@pytest.fixture(scope="module")
def learned(editor, sounds) -> list[SoundDirection]:
    """Rain and fire learned together over six seeds, measured on three held-out seeds."""
    return editor.learn_directions([sounds["raining"], sounds["fire"]], TRAIN_SEEDS, steps=STEPS, holdout=HOLDOUT)


def clip_loss(editor: Editor, latents: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos(CLIP(G(w)), target) per latent, computed here independently of the loss terms."""
    with torch.no_grad():
        features = F.normalize(editor.clip.encode_image(editor.generator.synthesis(latents, noise_mode="const")), dim=-1)
    return 1 - features @ target


def test_a_learned_direction_lowers_the_clip_loss_on_seeds_it_never_saw(editor, learned):
    held_out = [seed for seed in range(len(TRAIN_SEEDS) + HOLDOUT) if seed not in TRAIN_SEEDS]
    w = torch.stack([seed_latent(editor.generator, seed) for seed in held_out])
    for direction in learned:
        before, after = clip_loss(editor, w, direction.target), clip_loss(editor, w + direction.offset, direction.target)
        assert (after < before).all(), direction.name
        measured = direction.holdout
        assert measured["seeds"] == held_out
        assert measured["clip_source_mean"] == pytest.approx(before.mean().item(), abs=1e-5)
        assert measured["clip_direction_mean"] == pytest.approx(after.mean().item(), abs=1e-5)
        assert measured["clip_per_image_mean"] < measured["clip_source_mean"]
        gain = measured["clip_source_mean"] - measured["clip_per_image_mean"]
        assert measured["gain_fraction"] == pytest.approx((before - after).mean().item() / gain, rel=1e-4)


def test_the_offset_is_shared_and_the_record_says_what_it_was_learned_with(editor, learned, sounds):
    rain, fire = learned
    assert (rain.name, fire.name) == ("raining", "fire")
    assert rain.offset.shape == (editor.generator.num_ws, editor.generator.w_dim) and rain.offset.abs().amax() > 1e-3
    assert not torch.equal(rain.offset, fire.offset)
    assert rain.sound["file"] == "raining.wav" and len(rain.sound["sha256"]) == 64
    assert rain.generator["architecture"] == json.loads(json.dumps(editor.generator.init_kwargs))
    assert rain.generator["state_sha256"] == state_sha256(editor.generator)
    assert rain.settings["steps"] == STEPS and rain.settings["sources"] == [{"seed": s, "class_index": None} for s in TRAIN_SEEDS]
    expected = editor.audio_encoder.encode(*_window(editor, sounds["raining"]))[0]
    torch.testing.assert_close(rain.target, expected.cpu(), rtol=0, atol=1e-6)


def _window(editor, path):
    from sgsim.audio import load_centred_window

    rate = editor.audio_encoder.sample_rate
    window = load_centred_window(path, rate, editor.audio_encoder.mono, editor.audio_encoder.input_seconds)
    return torch.from_numpy(window)[None], rate


def test_sounds_learned_together_equal_sounds_learned_alone(editor, learned, sounds):
    alone = editor.learn_direction(Target(sounds["fire"]), TRAIN_SEEDS, steps=STEPS, holdout=0)
    torch.testing.assert_close(alone.offset, learned[1].offset, rtol=1e-4, atol=1e-5)
    assert alone.holdout is None


def test_a_larger_latent_weight_learns_a_smaller_offset(editor, learned, sounds):
    held = editor.learn_direction(sounds["raining"], TRAIN_SEEDS, steps=STEPS, holdout=0, lambda_latent=0.5)
    assert held.offset.square().sum() < 0.8 * learned[0].offset.square().sum()


def test_save_and_load_round_trip_exactly(learned, tmp_path):
    path = save_directions(tmp_path / "library.sgdir", learned)
    loaded = load_directions(path)
    assert list(loaded) == ["raining", "fire"] or set(loaded) == {"raining", "fire"}
    for direction in learned:
        again = loaded[direction.name]
        assert torch.equal(again.offset, direction.offset) and torch.equal(again.target, direction.target)
        assert again.record() == json.loads(json.dumps(direction.record()))
    single = learned[0].save(tmp_path / "rain.sgdir")
    assert torch.equal(SoundDirection.load(single).offset, learned[0].offset)
    with pytest.raises(SgsimError, match="holds 2 directions"):
        SoundDirection.load(path)
    assert SoundDirection.load(path, name="fire").name == "fire"


def test_strength_zero_is_the_source_exactly_and_strength_s_renders_w_plus_s_offset(editor, learned):
    rain = learned[0]
    applied = editor.apply(rain, 7, strengths=(0.0, 0.5, 1.5))
    w = seed_latent(editor.generator, 7)
    assert torch.equal(applied.latents[0], w) and torch.equal(applied.source_latent, w)
    assert torch.equal(applied.latents[2], w + 1.5 * rain.offset)
    with torch.no_grad():
        expected = editor.generator.synthesis(torch.stack([w, w + 0.5 * rain.offset, w + 1.5 * rain.offset]), noise_mode="const")
    assert torch.equal(applied.images, expected.clamp(-1, 1))  # Editor.render clamps to the documented range


def test_several_directions_add_with_their_weights(editor, learned):
    rain, fire = learned
    applied = editor.apply([rain, fire], 3, strengths=(2.0,), weights=(1.0, 0.5))
    w = seed_latent(editor.generator, 3)
    torch.testing.assert_close(applied.latents[0], w + 2.0 * (rain.offset + 0.5 * fire.offset), rtol=0, atol=1e-6)
    with pytest.raises(SgsimError, match="one weight per direction"):
        editor.apply([rain, fire], 3, weights=(1.0,))


def test_an_editor_without_encoders_applies_but_cannot_learn(editor, learned, sounds):
    applier = Editor(editor.generator, None, None, device="cpu")
    assert torch.equal(applier.apply(learned[0], 1).images, editor.apply(learned[0], 1).images)
    with pytest.raises(SgsimError, match="only applies directions"):
        applier.learn_direction(sounds["fire"], [0])


def _other_generator(channel_max: int, seed: int):
    from stylegan2.networks import Generator

    torch.manual_seed(seed)
    return Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                     mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": channel_max})


def test_another_architecture_is_refused_in_one_line_and_other_weights_are_warned_about(learned):
    narrower = Editor(_other_generator(16, 1), None, None, device="cpu")
    with pytest.raises(SgsimError, match="another architecture") as error:
        narrower.apply(learned[0], 0)
    assert "\n" not in str(error.value) and "channel_max 32" in str(error.value) and "channel_max 16" in str(error.value)
    retrained = Editor(_other_generator(32, 5), None, None, device="cpu")
    with pytest.warns(UserWarning, match="other weights of this architecture"):
        retrained.apply(learned[0], 0)


def _rewritten(path, tmp_path, edit) -> object:
    """A copy of a direction file with its records or tensors changed by edit(records, tensors)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as stream:
        metadata = stream.metadata()
        tensors = {key: stream.get_tensor(key) for key in stream.keys()}
    records = json.loads(metadata[METADATA_KEY])
    edit(records, tensors)
    metadata[METADATA_KEY] = json.dumps(records)
    target = tmp_path / "edited.sgdir"
    save_file(tensors, str(target), metadata=metadata)
    return target


class Hostile:
    def __reduce__(self):
        import os

        return (os.system, ("touch hostile-ran",))


@pytest.mark.parametrize("damage, message", [
    ("truncated", "truncated or corrupt"),
    ("garbage", "not a readable direction file"),
    ("empty", "not a readable direction file"),
    ("pickle", "not a readable direction file"),
    ("generator", "not an sgsim direction file"),
    ("record type", "wrong type"),
    ("missing field", "does not have the fields"),
    ("offset shape", r"expected float32 \[8, 32\]"),
    ("nan", "NaN or infinite"),
    ("extra tensor", "is damaged"),
])
def test_corrupt_and_hostile_files_are_one_line_errors_and_run_no_code(learned, tmp_path, monkeypatch, tiny_generator_file, damage, message):
    monkeypatch.chdir(tmp_path)
    good = learned[0].save(tmp_path / "good.sgdir")
    data = good.read_bytes()
    path = tmp_path / "bad.sgdir"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "pickle":
        path.write_bytes(pickle.dumps(Hostile()))
    elif damage == "generator":
        path = tiny_generator_file
    elif damage == "record type":
        path = _rewritten(good, tmp_path, lambda records, tensors: records["raining"].update(settings="oops"))
    elif damage == "missing field":
        path = _rewritten(good, tmp_path, lambda records, tensors: records["raining"].pop("holdout"))
    elif damage == "offset shape":
        path = _rewritten(good, tmp_path, lambda records, tensors: tensors.update({"raining.offset": torch.zeros(4, 32)}))
    elif damage == "nan":
        path = _rewritten(good, tmp_path, lambda records, tensors: tensors["raining.offset"].fill_(float("nan")))
    elif damage == "extra tensor":
        path = _rewritten(good, tmp_path, lambda records, tensors: tensors.update({"payload": torch.zeros(3)}))
    with pytest.raises(SgsimError, match=message) as error:
        load_directions(path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "hostile-ran").exists()


def test_minibatches_score_only_their_samples_and_all_sources_at_once_is_no_minibatch(editor, learned, sounds):
    from sgsim.editing.optimise import optimise_latents
    from sgsim.editing.variables import SharedOffset

    sources = torch.stack([seed_latent(editor.generator, seed) for seed in TRAIN_SEEDS])
    variables = SharedOffset(sources, count=2)
    batches = variables.batches(4)
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3, 6, 7, 8, 9], [4, 5, 10, 11]]  # every offset in every batch
    assert variables.batches(len(TRAIN_SEEDS)) is None
    aims = torch.stack([d.target for d in learned]).repeat_interleave(len(TRAIN_SEEDS), dim=0)
    result = optimise_latents(editor.generator, editor.clip, variables.sources(), aims, steps=3, lr=0.1,
                              weights={"clip": 1.0, "latent": 0.002}, variables=variables, batches=batches)
    clip = result.losses["clip"]
    assert np.isfinite(clip[0, batches[0]]).all() and np.isnan(clip[0, batches[1]]).all()
    assert np.isnan(clip[1, batches[0]]).all() and np.isfinite(clip[1, batches[1]]).all()
    assert np.isfinite(clip[2, batches[0]]).all()
    whole = editor.learn_directions([sounds["raining"], sounds["fire"]], TRAIN_SEEDS, steps=STEPS, holdout=0,
                                    sources_per_step=len(TRAIN_SEEDS))
    assert all(torch.equal(a.offset, b.offset) for a, b in zip(whole, learned))


def test_a_direction_learned_in_minibatches_still_generalises(editor, sounds):
    direction = editor.learn_direction(sounds["raining"], TRAIN_SEEDS, steps=STEPS, holdout=HOLDOUT, sources_per_step=2)
    assert direction.settings["sources_per_step"] == 2
    assert direction.holdout["clip_direction_mean"] < direction.holdout["clip_source_mean"]


def test_with_the_identity_term_on_the_held_out_numbers_include_identity_distances(editor, sounds):
    from sgsim.identity import ArcFace, IdentityLoss, IrSeConfig

    torch.manual_seed(6)
    identity = IdentityLoss(ArcFace(IrSeConfig(stem_channels=8, stages=((8, 1), (16, 1)), se_reduction=4, embedding_dim=32)).eval())
    faces = Editor(editor.generator, editor.audio_encoder, editor.clip, identity=identity, device="cpu", preset="ffhq")
    direction = faces.learn_direction(sounds["raining"], TRAIN_SEEDS[:3], steps=4, holdout=2, sources_per_step=2)
    held = direction.holdout
    assert direction.settings["weights"]["id"] == 0.004 and held["seeds"] == [3, 4]
    w = torch.stack([seed_latent(editor.generator, seed) for seed in held["seeds"]])
    with torch.no_grad():
        source_images = editor.generator.synthesis(w, noise_mode="const")
        expected = identity.to_source(source_images)(editor.generator.synthesis(w + direction.offset, noise_mode="const"))
    assert held["id_direction_mean"] == pytest.approx(expected.mean().item(), abs=1e-5) and expected.mean() > 0
    assert held["id_per_image_mean"] > 0 and "id_source_mean" not in held
