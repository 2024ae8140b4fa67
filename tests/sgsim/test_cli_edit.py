"""`sgsim edit` and `sgsim generate` end to end on tiny real-format networks and real sounds."""

from __future__ import annotations

import hashlib
import json

import av
import click
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from PIL import Image

import checkpoints
from sgsim.cli import main
from sgsim.cli.options import parse_seeds
from sgsim.images import read_image
from sgsim.outputs import to_uint8
from sgsim.outputs import LABEL_BAND, font_size_for


STEPS = "4"


@pytest.fixture(scope="module")
def sounds(shared_data):
    return shared_data / "audio" / "raining.wav", shared_data / "audio" / "fire.wav"


def test_edit_writes_every_output_and_records_the_run(run, sounds, tmp_path, tiny_generator_file, tiny_clip_space, caplog):
    out = tmp_path / "rain"
    result = run("edit", "--audio", str(sounds[0]), "--audio", str(sounds[1]), "--seed", "3", "--out", str(out),
                 "--strength", "0.5,1", "--save-video")
    assert result.exit_code == 0, result.output
    assert f"clip {tiny_clip_space}" in result.output  # says which weights it loaded, not open_clip's "initialized randomly"
    assert not any("initialized randomly" in record.getMessage() for record in caplog.records)
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "source.png", "raining_s0.5.png", "raining_s1.png", "fire_s0.5.png", "fire_s1.png",
        "comparison.png", "latents.npz", "optimisation.mp4", "run.json",
    ])
    assert [p.name for p in tmp_path.iterdir()] == ["rain"]  # no staging folder left behind
    assert Image.open(out / "raining_s1.png").size == (32, 32)
    # A row per sound, a column per strength after the source; 32 px tiles shown at 128 px under labels.
    band = round(font_size_for(128) * LABEL_BAND)
    assert Image.open(out / "comparison.png").size == (3 * 128, 2 * (2 * band + 128))
    with av.open(str(out / "optimisation.mp4")) as video:
        frames = [frame.to_ndarray(format="rgb24") for frame in video.decode(video=0)]
    assert len(frames) == int(STEPS) + 1 and frames[0].shape == (band * 2 + 128, 3 * 128, 3)  # each step's input, then the result; source + one tile per sound
    latents = np.load(out / "latents.npz")
    assert latents["source"].shape == (8, 32) and latents["edited"].shape == (2, 8, 32)
    assert latents["swept"].shape == (2, 2, 8, 32)
    np.testing.assert_allclose(latents["swept"][:, 1], latents["edited"], atol=1e-6)
    report = json.loads((out / "run.json").read_text())
    assert report["weights"]["generator"]["sha256"] == hashlib.sha256(tiny_generator_file.read_bytes()).hexdigest()
    assert set(report["weights"]) == {"generator", "audio_encoder", "clip"}
    assert report["settings"]["steps"] == int(STEPS) and report["settings"]["strengths"] == [0.5, 1.0]
    assert set(report["final_losses"]) == {"raining.wav", "fire.wav"}
    assert report["versions"]["torch"] and report["timings_s"]["edit"] > 0


def test_same_seed_writes_identical_files(run, sounds, tmp_path):
    for name in ("a", "b"):
        assert run("edit", "--audio", str(sounds[1]), "--seed", "5", "--out", str(tmp_path / name)).exit_code == 0
    for name in ("source.png", "fire_s1.png", "comparison.png", "latents.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_generate_then_edit_its_latent_and_its_image(run, sounds, tmp_path):
    assert run("generate", "--seed", "3", "--seed", "4", "--out", str(tmp_path / "gen")).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == [
        "run.json", "seed0003.npz", "seed0003.png", "seed0004.npz", "seed0004.png"]
    by_latent = run("edit", "--audio", str(sounds[0]), "--latent", str(tmp_path / "gen" / "seed0003.npz"), "--out", str(tmp_path / "l"))
    by_seed = run("edit", "--audio", str(sounds[0]), "--seed", "3", "--out", str(tmp_path / "s"))
    assert by_latent.exit_code == 0 and by_seed.exit_code == 0
    source = (tmp_path / "gen" / "seed0003.png").read_bytes()
    assert (tmp_path / "l" / "source.png").read_bytes() == source == (tmp_path / "s" / "source.png").read_bytes()
    by_image = run("edit", "--audio", str(sounds[0]), "--image", str(tmp_path / "gen" / "seed0004.png"),
                   "--invert-steps", "2", "--refine-steps", "3", "--mix", "layers", "--text", "a snowy mountain", "--out", str(tmp_path / "i"))
    assert by_image.exit_code == 0, by_image.output
    report = json.loads((tmp_path / "i" / "run.json").read_text())
    inversion = report["source"]["inversion"]
    assert report["settings"]["mix"] == "layers" and inversion["steps"] == 2 and inversion["method"] == "optimise"
    assert inversion["refine_steps"] == 3 and inversion["align"] is False  # a generator file: no alignment
    assert report["outputs"][:2] == ["input.png", "source.png"]  # the photo as inverted, then the reconstruction
    with Image.open(tmp_path / "i" / "input.png") as photo:
        assert np.array_equal(np.asarray(photo), to_uint8(read_image(tmp_path / "gen" / "seed0004.png", 32))[0])
    assert any(key.startswith("noise.") for key in np.load(tmp_path / "i" / "latents.npz"))  # the inversion's noise
    # The photo, its reconstruction, then the edit: the photo's tile is the photo itself, scaled x4 by nearest neighbour.
    band = round(font_size_for(128) * LABEL_BAND)
    comparison = np.asarray(Image.open(tmp_path / "i" / "comparison.png").convert("RGB"))
    assert comparison.shape == (2 * band + 128, 3 * 128, 3)
    photo = np.asarray(Image.open(tmp_path / "gen" / "seed0004.png").convert("RGB"))
    np.testing.assert_array_equal(comparison[2 * band:, :128], photo.repeat(4, axis=0).repeat(4, axis=1))


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_edit_of_an_inverted_latent_starts_from_the_inverted_image(run, sounds, tmp_path):
    assert run("generate", "--seed", "4", "--out", str(tmp_path / "gen")).exit_code == 0
    inverted = run("invert", "--image", str(tmp_path / "gen" / "seed0004.png"), "--steps", "2", "--refine-steps", "3", "--out", str(tmp_path / "inv"))
    assert inverted.exit_code == 0, inverted.output
    edited = run("edit", "--audio", str(sounds[0]), "--latent", str(tmp_path / "inv" / "latent.npz"), "--out", str(tmp_path / "e"))
    assert edited.exit_code == 0, edited.output
    # Same W+ and the inversion's fitted noise: the edit's source is exactly the inverted image.
    assert (tmp_path / "e" / "source.png").read_bytes() == (tmp_path / "inv" / "reconstruction.png").read_bytes()


@pytest.mark.parametrize("case, expected", [
    ("silent", "the sound is silent"),
    ("corrupt", "corrupt.wav"),
    ("missing", "no such audio file"),
    ("seed and image", "exactly one source"),
    ("no source", "exactly one source"),
    ("negative seed", "not in the range"),
    ("bad strength", "comma-separated list of numbers"),
    ("nan strength", "finite"),
    ("layers without text", "every target needs both audio and text"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, sounds, tmp_path, case, expected, one_error_line):
    silent, corrupt = tmp_path / "silent.wav", tmp_path / "corrupt.wav"
    soundfile.write(silent, np.zeros(44100, dtype=np.float32), 44100)
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    audio = {"silent": silent, "corrupt": corrupt, "missing": tmp_path / "missing.wav"}.get(case, sounds[0])
    source = {"seed and image": ["--seed", "1", "--image", str(tmp_path / "x.png")], "no source": [],
              "negative seed": ["--seed", "-1"]}.get(case, ["--seed", "1"])
    strength = {"bad strength": "0.5,,x", "nan strength": "1,nan"}.get(case, "1")
    out = tmp_path / "out"
    mix = ["--mix", "layers"] if case == "layers without text" else []
    result = run("edit", "--audio", str(audio), *source, "--strength", strength, *mix, "--out", str(out))
    assert expected in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.wav", "silent.wav"]


def test_image_to_align_without_the_faces_extra_is_one_line_before_the_networks_load(sounds, tmp_path, monkeypatch, one_error_line):
    import sys

    from sgsim.editing import Editor

    def load(*args, **kwargs):
        raise AssertionError("the networks loaded before the missing 'faces' extra was reported")

    monkeypatch.setitem(sys.modules, "dlib", None)  # as if sgsim[faces] were not installed
    monkeypatch.setattr(Editor, "from_pretrained", load)
    Image.new("RGB", (48, 40), (200, 120, 40)).save(tmp_path / "photo.png")
    result = CliRunner().invoke(main, ["edit", "--audio", str(sounds[0]), "--image", str(tmp_path / "photo.png"), "--align",
                                       "--out", str(tmp_path / "out")])
    error = one_error_line(result)
    assert "pip install 'sgsim[faces]'" in error and "--no-align" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_missing_weights_give_the_download_instruction(sounds, tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["edit", "--audio", str(sounds[0]), "--seed", "1", "--out", str(tmp_path / "out"),
                                       "--clip", "clip-vit-b-32"])
    message = one_error_line(result)
    assert "3 weights files are not in the cache" in message
    assert "sgsim weights download ffhq sgsim-resnet18 clip-vit-b-32" in message
    for name in ("ffhq", "sgsim-resnet18", "clip-vit-b-32"):
        assert checkpoints.entry(name).urls[0] in message and f"sgsim weights import FILE --name {name}" in message
    assert not (tmp_path / "out").exists()


def test_one_missing_file_keeps_the_single_instruction(sounds, tmp_path, monkeypatch, tiny_generator_file, encoder_checkpoint_file, one_error_line):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["edit", "--audio", str(sounds[0]), "--seed", "1", "--out", str(tmp_path / "out"),
                                       "--generator", str(tiny_generator_file), "--encoder-checkpoint", str(encoder_checkpoint_file),
                                       "--clip", "clip-vit-b-32"])
    message = one_error_line(result)
    assert message.startswith("Error: the clip-vit-b-32 weights") and "sgsim weights download clip-vit-b-32" in message


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_an_edits_latents_chain_from_the_edited_latent_or_the_source(run, sounds, tmp_path):
    assert run("edit", "--audio", str(sounds[0]), "--audio", str(sounds[1]), "--seed", "3", "--out", str(tmp_path / "a")).exit_code == 0
    latents = tmp_path / "a" / "latents.npz"
    for spec, name in [(latents, "b"), (f"{latents}:edited[1]", "c"), (f"{latents}:source", "d")]:
        result = run("edit", "--text", "a smile", "--latent", str(spec), "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
    # A bare latents.npz continues from the first sound's edit; :edited[1] from the second; :source from the start.
    assert np.abs(_pixels(tmp_path / "b" / "source.png") - _pixels(tmp_path / "a" / "raining_s1.png")).max() <= 1
    assert np.abs(_pixels(tmp_path / "c" / "source.png") - _pixels(tmp_path / "a" / "fire_s1.png")).max() <= 1
    assert (tmp_path / "d" / "source.png").read_bytes() == (tmp_path / "a" / "source.png").read_bytes()
    assert json.loads((tmp_path / "c" / "run.json").read_text())["source"]["latent_key"] == "edited[1]"


def test_a_text_only_edit_needs_no_sound(run, tmp_path):
    result = run("edit", "--text", "a snowy mountain", "--seed", "2", "--out", str(tmp_path / "t"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "a_snowy_mountain_s1.png", "comparison.png", "latents.npz", "run.json", "source.png"]
    report = json.loads((tmp_path / "t" / "run.json").read_text())
    assert report["targets"] == [{"audio": None, "text": "a snowy mountain"}] and set(report["final_losses"]) == {"a snowy mountain"}


def test_runs_without_out_get_fresh_folders(run, sounds, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for seed in ("1", "1", "2"):
        assert run("edit", "--audio", str(sounds[0]), "--seed", seed).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["raining-seed1", "raining-seed1-2", "raining-seed2"]


def test_run_json_records_the_command_line_the_inversion_seed_and_every_guide(run, sounds, tmp_path):
    args = ["edit", "--audio", str(sounds[0]), "--audio", str(sounds[0]), "--text", "fire", "--mix", "layers", "--seed", "4",
            "--out", str(tmp_path / "m")]
    assert run(*args).exit_code == 0
    report = json.loads((tmp_path / "m" / "run.json").read_text())
    assert report["argv"][1:len(args) + 1] == args and report["command"] == "edit"
    # Two sounds with the same text: four optimised latents, four final losses, none hiding another.
    assert list(report["final_losses"]) == ["raining.wav (sound)", "raining.wav (sound) #2", "fire (text)", "fire (text) #2"]
    assert report["source"]["seed"] == 4 and report["source"]["inversion"] is None and "seed" not in report["settings"]


def test_generate_takes_seed_ranges_and_repeated_seeds(run, tmp_path):
    assert run("generate", "--seeds", "0-2,7", "--seed", "1", "--seed", "9", "--out", str(tmp_path / "g")).exit_code == 0
    report = json.loads((tmp_path / "g" / "run.json").read_text())
    assert report["seeds"] == [0, 1, 2, 7, 9]  # --seeds in order, then each --seed not already drawn
    assert sorted(p.name for p in (tmp_path / "g").glob("*.png")) == [f"seed{s:04d}.png" for s in (0, 1, 2, 7, 9)]


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_invert_records_its_run(run, tmp_path):
    assert run("generate", "--seed", "5", "--out", str(tmp_path / "gen")).exit_code == 0
    assert run("invert", "--image", str(tmp_path / "gen" / "seed0005.png"), "--steps", "2", "--refine-steps", "3", "--seed", "7",
               "--out", str(tmp_path / "inv")).exit_code == 0
    report = json.loads((tmp_path / "inv" / "run.json").read_text())
    assert report["command"] == "invert" and report["inversion_seed"] == 7 and report["steps"] == 2
    assert report["refine_steps"] == 3 and report["align"] is False  # a generator file, not a cached face generator
    assert report["outputs"] == ["input.png", "reconstruction.png", "latent.npz", "run.json"]


@pytest.mark.parametrize("text, expected", [
    ("0-3,42", [0, 1, 2, 3, 42]), ("7", [7]), (" 1 - 2 ,5", [1, 2, 5]), ("4294967295", [4294967295]),
])
def test_seed_lists_read_like_nvidias(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text, message", [
    ("3-1", "runs backwards"), ("a", "is not a seed or a range"), ("1,,2", "is not a seed or a range"),
    ("-1", "is not a seed or a range"), ("4294967296", "seeds run from 0 to 4294967295"), ("0-20000", "more than 10000 seeds"),
])
def test_bad_seed_lists_say_what_is_wrong(text, message):
    with pytest.raises(click.BadParameter, match=message):
        parse_seeds(text)


def test_save_video_gif_writes_the_labelled_gif_instead(run, sounds, tmp_path):
    result = run("edit", "--audio", str(sounds[1]), "--seed", "2", "--save-video", "gif", "--out", str(tmp_path / "g"))
    assert result.exit_code == 0, result.output
    assert "optimisation.gif" in json.loads((tmp_path / "g" / "run.json").read_text())["outputs"]
    with Image.open(tmp_path / "g" / "optimisation.gif") as gif:
        assert gif.n_frames == int(STEPS) + 1 and gif.size == (2 * 128, 2 * round(font_size_for(128) * LABEL_BAND) + 128)
    assert not (tmp_path / "g" / "optimisation.mp4").exists()


def test_weight_sets_any_loss_term_by_name_and_run_json_records_it(run, sounds, tmp_path):
    out = tmp_path / "weighted"
    result = run("edit", "--audio", str(sounds[0]), "--seed", "3", "--out", str(out), "--weight", "latent=0.5",
                 "--weight", "perceptual=0")
    assert result.exit_code == 0, result.output
    weights = json.loads((out / "run.json").read_text())["settings"]["weights"]
    assert weights["latent"] == 0.5 and weights["perceptual"] == 0.0


@pytest.mark.parametrize("flag", ["latnet=0.5", "latent", "latent=-1", "latent=nan", "=1"])
def test_a_bad_weight_is_one_line_before_any_work(run, sounds, tmp_path, flag, one_error_line):
    out = tmp_path / "bad"
    result = run("edit", "--audio", str(sounds[0]), "--seed", "3", "--out", str(out), "--weight", flag)
    assert result.exit_code != 0
    assert one_error_line(result).startswith("Error: Invalid value for '--weight'")
    assert not out.exists()


def test_a_full_resolution_cpu_edit_is_announced_with_its_rough_cost(capsys):
    from sgsim.cli.edit import CPU_SECONDS_PER_STEP_1024, warn_slow_cpu_edit

    warn_slow_cpu_edit(256, "cpu", 300)
    warn_slow_cpu_edit(1024, "cuda:0", 300)
    assert capsys.readouterr().err == ""
    warn_slow_cpu_edit(1024, "cpu", 300)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and f"roughly {CPU_SECONDS_PER_STEP_1024 * 300 / 60:.0f} min for 300 steps" in note
    warn_slow_cpu_edit(2048, "cpu", 100)  # 4x the pixels of a 1024 px image
    assert f"roughly {CPU_SECONDS_PER_STEP_1024 * 4 * 100 / 60:.0f} min for 100 steps" in capsys.readouterr().err


def test_a_class_the_generator_cannot_take_is_refused_before_the_encoders_load(run, sounds, tmp_path, monkeypatch, one_error_line):
    from sgsim import components

    def load(*args, **kwargs):
        raise AssertionError("the audio encoder loaded before the generator's class was checked")

    monkeypatch.setattr(components, "load_audio_encoder", load)
    result = run("edit", "--audio", str(sounds[0]), "--seed", "1", "--class", "2", "--out", str(tmp_path / "out"))
    assert "this generator is unconditional" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_notice_is_one_clean_note_line_not_a_python_warning(run, sounds, tmp_path, monkeypatch):
    """The library's notices (here: no ArcFace weights, so no identity loss) reach a CLI user as one `note:` line,
    without Python's file:line, category and source line; the API keeps them as SgsimNotice warnings."""
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))
    result = run("edit", "--audio", str(sounds[0]), "--seed", "3", "--out", str(tmp_path / "o"), "--weight", "id=0.5")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "editing without the identity loss" in line]
    assert len(notes) == 1 and notes[0].startswith("note: editing without the identity loss (id weight 0): ")
    assert "Warning" not in result.output and "editor.edit(" not in result.output and ".py:" not in result.output


def test_work_resolution_is_a_flag_recorded_with_its_reason(run, sounds, tmp_path, one_error_line):
    result = run("edit", "--audio", str(sounds[0]), "--seed", "1", "--work-resolution", "16", "--out", str(tmp_path / "w"))
    assert result.exit_code == 0, result.output
    assert "work resolution 16 (16: asked for)" in result.output
    assert Image.open(tmp_path / "w" / "raining_s1.png").size == (32, 32)
    recorded = json.loads((tmp_path / "w" / "run.json").read_text())["settings"]["work_resolution"]
    assert recorded == {"requested": "16", "used": 16, "reason": "16: asked for"}
    bad = run("edit", "--audio", str(sounds[0]), "--seed", "1", "--work-resolution", "half", "--out", str(tmp_path / "x"))
    assert "not auto, full or a number of pixels" in one_error_line(bad)
    assert not (tmp_path / "x").exists()


def test_steps_auto_says_and_records_how_many_steps_ran_and_why(run, sounds, tmp_path):
    from sgsim.editing.stopping import AUTO_RULE, stop_reason

    result = run("edit", "--audio", str(sounds[0]), "--seed", "1", "--steps", "auto", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "a" / "run.json").read_text())["settings"]
    (used,) = settings["steps_used"]
    assert settings["steps"] == "auto" and AUTO_RULE.min_steps <= used <= AUTO_RULE.max_steps
    assert f"steps auto: {settings['steps_reason']}\n" in result.output
    assert settings["steps_reason"] in (stop_reason(AUTO_RULE, used, [used], 1), stop_reason(AUTO_RULE, used, [used], 0))


@pytest.mark.parametrize("steps", ["0", "abc", "1.5"])
def test_bad_steps_are_one_line(run, sounds, tmp_path, steps, one_error_line):
    result = run("edit", "--audio", str(sounds[0]), "--seed", "1", "--steps", steps, "--out", str(tmp_path / "s"))
    assert f"{steps!r} is not a whole number from 1 to 100000, nor auto" in one_error_line(result)
    assert not (tmp_path / "s").exists()
