"""sgsim.Editor on tiny networks loaded through the real loaders, guided by real sounds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sgsim.editing import EditDiverged, ImageSource, Target
from sgsim.editing.mixing import coarse_rows
from sgsim.audio import load_centred_window, rms_dbfs
from sgsim.editing.targets import embed_target, loudness_scale
from sgsim.errors import AudioError, SgsimError


STEPS = 12


@pytest.fixture(scope="session")
def sounds(shared_data):
    return {name: shared_data / "audio" / f"{name}.wav" for name in ("raining", "fire", "explosion")}


@pytest.fixture(scope="module")
def rain_edit(editor, sounds):
    """The reference edit most tests compare against: seed 0 toward raining.wav, default weights."""
    return editor.edit(0, Target(sounds["raining"]), steps=STEPS, strengths=(0.0, 0.5, 1.0, 1.5))


def test_components_load_from_files_and_clip_follows_the_audio_encoder(editor, tiny_generator_file, tiny_clip_space):
    assert editor.generator.img_resolution == 32 and editor.generator.num_ws == 8
    assert editor.weight_files == {
        "generator": tiny_generator_file,
        "audio_encoder": editor.weight_files["audio_encoder"],
        "clip": tiny_clip_space,
    }
    assert editor.clip.encode_text(["rain"]).shape == (1, 512)
    assert editor.preset.lambda_latent == 0.002 and editor.preset.lambda_id == 0  # a path: the documented default


def test_a_long_sound_is_read_only_where_the_encoder_listens(editor, tmp_path):
    """A 150 s file steers the edit by its centred input_seconds (60 s, the decoding cap; encoders embed all of
    what they are given, docs/encoders.md#the-decoding-cap); its level is that window's, not the whole file's."""
    import soundfile

    rate = editor.audio_encoder.sample_rate
    noise = np.random.default_rng(2).standard_normal(150 * rate).astype(np.float32)
    noise *= np.repeat(np.float32([0.01, 0.3, 0.01]), [70 * rate, 10 * rate, 70 * rate])  # loud only in the middle
    path = tmp_path / "long.wav"
    soundfile.write(path, noise, rate, subtype="FLOAT")
    with pytest.warns(UserWarning, match="only its centred 60 s are used"):
        embedded = embed_target(Target(path), editor.audio_encoder, editor.clip)
        window = load_centred_window(path, rate, True, editor.audio_encoder.input_seconds)
    assert len(window) == 60 * rate
    expected = editor.audio_encoder.encode(torch.from_numpy(window)[None], rate)[0]
    torch.testing.assert_close(embedded.sound, expected, rtol=0, atol=1e-6)
    assert embedded.loudness_dbfs == pytest.approx(rms_dbfs(window)) and embedded.loudness_dbfs > rms_dbfs(noise) + 3


def test_the_clip_loss_falls(rain_edit):
    clip = rain_edit.losses["clip"][:, 0]
    assert clip[-1] < clip[0] - 0.01
    assert rain_edit.images.shape == (1, 4, 3, 32, 32) and rain_edit.latents.shape == (1, 4, 8, 32)
    assert rain_edit.settings["lambda_latent"] == 0.002 and rain_edit.settings["steps"] == STEPS


def test_larger_lambda_latent_stays_closer_to_the_source(editor, sounds, rain_edit):
    held = editor.edit(0, Target(sounds["raining"]), steps=STEPS, lambda_latent=0.1)
    def distance(result):
        return (result.edited_latents[0] - result.source_latent).square().sum().item()

    assert distance(held) < 0.8 * distance(rain_edit)


def test_a_batch_of_targets_equals_editing_them_one_by_one(editor, sounds, rain_edit):
    fire = Target(sounds["fire"], text="a fire", weight=0.5)
    batched = editor.edit(0, [Target(sounds["raining"]), fire], steps=STEPS)
    for t, alone in enumerate([rain_edit, editor.edit(0, fire, steps=STEPS)]):
        # Every step's losses agree to float rounding: each sample followed its own path.
        np.testing.assert_allclose(batched.losses["total"][:, t], alone.losses["total"][:, 0], atol=2e-5, rtol=0)
        np.testing.assert_allclose(batched.losses["clip"][:, t], alone.losses["clip"][:, 0], atol=2e-5, rtol=0)
        # Adam's first steps move each coordinate by about +-lr whatever its gradient's size, so rounding in
        # near-zero gradients (batched convolutions sum in another order) shows up in a few coordinates.
        moved = (alone.edited_latents[0] - alone.source_latent).abs().mean()
        assert (batched.edited_latents[t] - alone.edited_latents[0]).abs().mean() < 0.05 * moved


def test_same_seed_gives_identical_results(editor, sounds, rain_edit):
    again = editor.edit(0, Target(sounds["raining"]), steps=STEPS, strengths=(0.0, 0.5, 1.0, 1.5))
    assert torch.equal(again.images, rain_edit.images)
    assert torch.equal(again.edited_latents, rain_edit.edited_latents)


def test_settings_carry_an_edit_and_the_step_callback_gets_what_it_asks_for(editor, sounds, rain_edit):
    from sgsim.settings import EditSettings

    seen = []
    result = editor.edit(0, Target(sounds["raining"]), EditSettings(steps=STEPS, strengths=(0.0, 0.5, 1.0, 1.5)),
                         callback=lambda step, losses, latents, images: seen.append((step, losses["total"], latents, images)),
                         callback_values=("latents", "images"))
    assert torch.equal(result.images, rain_edit.images)  # the same edit as by keyword arguments
    assert [step for step, *_ in seen] == list(range(STEPS)) and seen[-1][1] == pytest.approx(float(result.losses["total"][-1, 0]))
    assert seen[0][2].shape == (1, *result.source_latent.shape) and torch.equal(seen[0][2].cpu(), result.source_latent[None])
    assert seen[0][3].shape == (1, *result.source_image.shape)  # the image the step drew: a preview needs no hook
    with pytest.raises(SgsimError, match="cannot ask for 'noise'"):
        editor.edit(0, Target(sounds["raining"]), steps=1, callback=lambda *args: None, callback_values=("noise",))
    with pytest.raises(TypeError, match="unknown edit setting 'step'"):
        editor.edit(0, Target(sounds["raining"]), step=1)


def test_layers_restricts_which_rows_move(editor, sounds):
    result = editor.edit(0, Target(sounds["raining"]), steps=STEPS, layers=[1, 4])
    moved = (result.edited_latents[0] - result.source_latent).abs().amax(dim=1)
    assert torch.equal(moved[[0, 2, 3, 5, 6, 7]], torch.zeros(6))
    assert (moved[[1, 4]] > 0).all()


def test_strength_sweep_is_monotone_in_latent_distance(rain_edit):
    distances = (rain_edit.latents[0] - rain_edit.source_latent).flatten(1).norm(dim=1)
    assert distances[0] == 0 and (distances.diff() > 0).all()
    torch.testing.assert_close(rain_edit.latents[0, 2], rain_edit.edited_latents[0])
    torch.testing.assert_close(rain_edit.images[0, 0], rain_edit.source_image)


def test_loudness_strength_scales_by_the_sounds_level(editor, sounds):
    result = editor.edit(0, [Target(sounds["fire"]), Target(sounds["explosion"])], steps=2, strengths=(1.0, 2.0),
                         loudness_strength=True)
    levels = result.settings["loudness_dbfs"]
    assert levels[0] < levels[1]  # fire.wav is quieter than explosion.wav
    expected = torch.tensor([[loudness_scale(level) * s for s in (1.0, 2.0)] for level in levels])
    torch.testing.assert_close(result.strengths, expected)
    assert result.strengths[0, 0] < result.strengths[1, 0]


def test_layer_mix_takes_coarse_rows_from_the_sound_and_fine_rows_from_the_text(editor, sounds, rain_edit):
    mixed = editor.edit(0, Target(sounds["raining"], text="a snowy mountain"), steps=STEPS, mix="layers")
    by_text = editor.edit(0, Target(text="a snowy mountain"), steps=STEPS)
    split = coarse_rows(editor.generator.num_ws)
    assert split == 4
    for rows, alone in ((slice(None, split), rain_edit), (slice(split, None), by_text)):
        moved = (alone.edited_latents[0, rows] - alone.source_latent[rows]).abs().mean()
        assert (mixed.edited_latents[0, rows] - alone.edited_latents[0, rows]).abs().mean() < 0.05 * moved
    np.testing.assert_allclose(mixed.losses["clip"], np.stack([rain_edit.losses["clip"][:, 0], by_text.losses["clip"][:, 0]], 1), atol=2e-5)
    assert mixed.guides == ["raining.wav (sound)", "a snowy mountain (text)"]


def test_sources_seed_w_and_w_plus_agree(editor, sounds):
    w_plus = editor.source_latent(5)
    assert torch.equal(editor.source_latent(w_plus[0].numpy()), w_plus)  # a seed's rows are all the same w
    assert torch.equal(editor.source_latent(w_plus[None]), w_plus)
    with pytest.raises(SgsimError, match="W\\+ \\[8, 32\\]"):
        editor.source_latent(torch.zeros(5, 32))


def test_identity_is_never_loaded_at_lambda_id_zero_and_missing_weights_warn_once(editor, sounds, tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path))  # an empty cache: no arcface-ir-se50
    editor.networks["identity"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        editor.edit(0, Target(sounds["fire"]), steps=2, lambda_id=0.0)
    with pytest.warns(UserWarning, match="without the identity loss") as caught:
        result = editor.edit(0, Target(sounds["fire"]), steps=2, lambda_id=0.004)
        editor.edit(0, Target(sounds["fire"]), steps=2, lambda_id=0.004)
    assert len(caught) == 1
    assert result.settings["lambda_id"] == 0.0
    assert (result.losses["id"] == 0).all()


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_long_phases_show_a_bar_with_time_left_when_the_caller_follows_no_steps(editor, sounds, capsys):
    """The API's edit and its inversion of a photo are never silent: a bar (steps, time left) unless a callback takes
    the steps; README's `applier.apply(..., "me.jpg")` inverts under one."""
    photo = editor.render(editor.source_start(3, 0, 1, None)[0][None])
    editor.edit(ImageSource(photo), Target(sounds["fire"]), steps=2, invert_steps=3, refine_steps=0)
    shown = capsys.readouterr().err
    assert "invert (optimise): " in shown and "/3 [" in shown and "optimising: " in shown and "/2 [" in shown
    assert "<00:" in shown  # tqdm's time left
    editor.edit(0, Target(sounds["fire"]), steps=2, callback=lambda step, losses: None)
    assert "optimising" not in capsys.readouterr().err  # the caller's callback follows the steps instead


def test_recorded_frames_end_on_the_result_of_the_last_step(editor, sounds):
    """A video of the optimisation shows every k-th step's input and then the final edit, never stopping a step short."""
    from sgsim.editing.folder import optimisation_frames

    result = editor.edit(0, Target(sounds["fire"]), steps=5, record_every=2)
    assert len(result.frames) == 4  # the inputs of steps 0, 2 and 4, then the result
    torch.testing.assert_close(result.frames[-1][0], result.images[0, 0], atol=1e-5, rtol=0)
    assert not torch.allclose(result.frames[-2][0], result.images[0, 0], atol=1e-5, rtol=0)
    assert len(list(optimisation_frames(result))) == 4


def test_a_nan_loss_stops_with_the_step_and_the_last_finite_latents(editor, sounds):
    with pytest.raises(EditDiverged, match="diverged at step") as caught:
        editor.edit(0, Target(sounds["fire"]), steps=STEPS, lr=1e30)
    assert 0 < caught.value.step < STEPS
    assert torch.isfinite(caught.value.last_latents).all()
    assert caught.value.losses["total"].shape == (caught.value.step, 1)


def test_bad_inputs_are_errors_that_name_the_problem(editor, sounds, tmp_path):
    silent = tmp_path / "silence.wav"
    import soundfile

    soundfile.write(silent, np.zeros(44100, dtype=np.float32), 44100)
    with pytest.raises(AudioError, match="silent"):
        editor.edit(0, Target(silent), steps=2)
    with pytest.raises(AudioError, match="silent"):
        editor.edit(0, Target((np.zeros(16000), 16000)), steps=2)
    with pytest.raises(SgsimError, match="needs a sound, a text or both"):
        editor.edit(0, Target(), steps=2)
    with pytest.raises(SgsimError, match="every target needs both"):
        editor.edit(0, Target(sounds["fire"]), steps=2, mix="layers")
    with pytest.raises(SgsimError, match="unknown mix"):
        editor.edit(0, Target(sounds["fire"]), steps=2, mix="average")
    with pytest.raises(SgsimError, match="lambda_latent and lambda_id must be finite numbers >= 0"):
        editor.edit(0, Target(sounds["fire"]), steps=2, lambda_latent=-1.0)
    with pytest.raises(SgsimError, match="text weight"):
        editor.edit(0, Target(sounds["fire"], text="fire", weight=float("inf")), steps=2)
    with pytest.raises(SgsimError, match="strengths"):
        editor.edit(0, Target(sounds["fire"]), steps=2, strengths=(float("nan"),))


def test_results_are_clamped_to_the_documented_range_and_save_what_the_cli_writes(rain_edit, tmp_path):
    assert rain_edit.images.min() >= -1 and rain_edit.images.max() <= 1
    assert rain_edit.source_image.min() >= -1 and rain_edit.source_image.max() <= 1
    names = rain_edit.save(tmp_path / "saved")
    assert names == ["source.png", "raining_s0.png", "raining_s0.5.png", "raining_s1.png", "raining_s1.5.png", "comparison.png",
                     "latents.npz", "run.json"]
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(names)


def test_calls_on_one_generator_take_turns(editor):
    """A generator's modes (noise buffers, precision) are set for one call: a second call waits for the first."""
    import threading

    from sgsim.editing.modes import generator_lock

    latents = editor.source_latent(0)[None]
    rendered = threading.Event()
    worker = threading.Thread(target=lambda: (editor.render(latents), rendered.set()))
    with generator_lock(editor.generator):  # as an edit in another thread holds it
        worker.start()
        worker.join(timeout=1.0)
        assert not rendered.is_set()
    worker.join()
    assert rendered.is_set()
