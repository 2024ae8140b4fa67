"""`sgsim direction` and `sgsim apply` end to end on tiny real-format networks and real sounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main
from sgsim.editing import SoundDirection, load_directions
from sgsim.outputs import tile_size

STEPS = "4"


@pytest.fixture(scope="module")
def sounds(shared_data):
    return {name: shared_data / "audio" / f"{name}.wav" for name in ("raining", "fire", "wind")}


@pytest.fixture(scope="module")
def library(run, sounds, tmp_path_factory):
    """Rain and fire learned over seeds 0-3 into a library folder."""
    folder = tmp_path_factory.mktemp("library") / "sounds"
    result = run("direction", "--audio", str(sounds["raining"]), "--audio", str(sounds["fire"]), "--seeds", "0-3",
                 "--holdout", "1", "--out", str(folder))
    assert result.exit_code == 0, result.output
    return folder, result.output


def test_direction_writes_one_file_per_sound_and_prints_the_held_out_numbers(library, tiny_generator_file):
    folder, output = library
    assert sorted(p.name for p in folder.iterdir()) == ["fire.sgdir", "raining.sgdir", "run.json"]  # run.json: as every command
    record = json.loads((folder / "run.json").read_text())
    assert record["command"] == "direction" and record["argv"][1] == "direction" and record["settings"]["steps"] == int(STEPS)
    assert set(record["directions"]) == {"fire", "raining"} and record["directions"]["raining"]["holdout"]["seeds"] == [4]
    assert record["weights"]["generator"]["sha256"] and record["outputs"] == ["raining.sgdir", "fire.sgdir", "run.json"]
    rain = SoundDirection.load(folder / "raining.sgdir")
    assert rain.settings["sources"] == [{"seed": s, "class_index": None} for s in range(4)]
    assert rain.generator["name"] == str(tiny_generator_file) and rain.holdout["seeds"] == [4]
    assert "raining: held-out seeds 4: CLIP loss" in output and "fire: held-out seeds 4" in output
    assert f"loaded generator {tiny_generator_file}" in output  # as `edit` says what it loaded
    assert "held-out check: " in output and f"/{STEPS} [" in output  # the check has a bar of its own
    assert rain.settings["command_line"][1:3] == ["direction", "--audio"]


def test_a_library_run_resumes_and_a_single_file_holds_every_direction(run, library, sounds, tmp_path):
    folder, _ = library
    before = {p.name: p.read_bytes() for p in folder.glob("*.sgdir")}
    result = run("direction", "--audio-dir", str(sounds["raining"].parent), "--seeds", "0-1", "--holdout", "0", "--out", str(folder),
                 "--audio", str(sounds["raining"]))
    assert result.exit_code == 0, result.output
    assert "2 of 8 directions already" in result.output  # the folder's eight sounds; raining.wav named twice is learned once
    after = {p.name: p.read_bytes() for p in folder.glob("*.sgdir")}
    assert {name: after[name] for name in before} == before  # learned ones are kept as they were
    assert len(after) == 8 and "thunderstorm.sgdir" in after
    assert len(json.loads((folder / "run.json").read_text())["directions"]) == 6  # this run's record: the six it learned
    single = tmp_path / "both.sgdir"
    assert run("direction", "--audio", str(sounds["wind"]), "--text", "a storm", "--seeds", "0-1", "--holdout", "0",
               "--weight", "latent=0.5", "--out", str(single)).exit_code == 0
    assert json.loads((tmp_path / "both.json").read_text())["outputs"] == ["both.sgdir", "both.json"]
    wind = load_directions(single)["wind"]
    assert list(load_directions(single)) == ["wind"] and wind.text == "a storm" and wind.settings["weights"]["latent"] == 0.5


def test_apply_writes_the_edit_layout_and_renders_w_plus_s_times_the_weighted_offsets(run, library, tmp_path, monkeypatch):
    import sgsim.outputs

    grids = []
    write_grid_rows = sgsim.outputs.write_grid_rows
    monkeypatch.setattr(sgsim.outputs, "write_grid_rows", lambda path, rows, *args: grids.append(rows) or write_grid_rows(path, rows, *args))
    folder, _ = library
    out = tmp_path / "applied"
    result = run("apply", "--direction", str(folder / "raining.sgdir"), "--direction", str(folder / "fire.sgdir"),
                 "--weight", "1", "--weight", "0.5", "--seed", "7", "--seeds", "9", "--strength", "0.5,1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted([
        "comparison.png", "latents.npz", "run.json",
        *(f"{seed}/{name}" for seed in ("seed0007", "seed0009") for name in ("source.png", "raining+fire_s0.5.png", "raining+fire_s1.png")),
    ])
    rain, fire = SoundDirection.load(folder / "raining.sgdir"), SoundDirection.load(folder / "fire.sgdir")
    latents = np.load(out / "latents.npz")
    offset = (rain.offset + 0.5 * fire.offset).numpy()
    np.testing.assert_allclose(latents["offset"], offset, rtol=0, atol=1e-6)
    for strength_index, strength in enumerate((0.5, 1.0)):
        np.testing.assert_allclose(latents["applied"][:, strength_index], latents["sources"] + strength * offset, rtol=0, atol=1e-6)
    [rows] = grids  # labelled as `edit` labels its grid: the strength under each tile, the weighted sum above the row
    assert sorted(row.title for row in rows) == ["seed0007: raining + 0.5·fire", "seed0009: raining + 0.5·fire"]
    assert rows[0].captions == ["source", "strength 0.5", "strength 1"]
    with Image.open(out / "comparison.png") as comparison:  # a row per seed: source, then each strength
        side = tile_size(32)
        assert comparison.width == 3 * side and 2 * side < comparison.height < 3 * side
    report = json.loads((out / "run.json").read_text())
    assert [d["weight"] for d in report["directions"]] == [1.0, 0.5] and report["strengths"] == [0.5, 1.0]
    assert report["generator"] == rain.generator["name"]  # found by the name the direction recorded


def test_apply_at_strength_zero_is_the_generated_source(run, library, tmp_path, tiny_generator_file):
    folder, _ = library
    assert CliRunner().invoke(main, ["generate", "--seed", "7", "--generator", str(tiny_generator_file),
                                     "--out", str(tmp_path / "gen")]).exit_code == 0
    result = run("apply", "--direction", f"{folder / 'raining.sgdir'}:raining", "--latent", str(tmp_path / "gen" / "seed0007.npz"),
                 "--strength", "0", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    generated = np.asarray(Image.open(tmp_path / "gen" / "seed0007.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "seed0007" / "raining_s0.png")), generated)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "seed0007" / "source.png")), generated)


def assert_one_error_line(result, message: str) -> None:
    """A failed run: a non-zero exit and one 'Error: ...' line on stderr naming the problem, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _narrow_generator(path):
    from stylegan2 import save_generator
    from stylegan2.networks import Generator

    torch.manual_seed(1)
    return save_generator(Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                                    synthesis_kwargs={"channel_base": 256, "channel_max": 16}), path)


@pytest.mark.parametrize("case, message", [
    ("architecture", "another architecture"),
    ("corrupt", "not a readable direction file"),
    ("missing", "direction file not found"),
    ("weights", "give one per direction"),
    ("no source", "pass the images to edit"),
    ("no name", "holds no direction named"),
    ("strength 1e300", "strengths must be one or more numbers from -100 to 100"),
    ("weight 1e300", "direction weights must be numbers from -100 to 100"),
    ("offset beyond float32 at this strength", "are not finite numbers"),
    ("10000 strengths", "10000 strengths, more than the 256 one run renders"),
])
def test_apply_refuses_bad_input_in_one_line_and_writes_nothing(run, library, tmp_path, case, message):
    folder, _ = library
    rain = str(folder / "raining.sgdir")
    args = {
        "architecture": ["--direction", rain, "--seed", "1", "--generator", str(_narrow_generator(tmp_path / "narrow.safetensors"))],
        "corrupt": ["--direction", str(tmp_path / "bad.sgdir"), "--seed", "1"],
        "missing": ["--direction", str(tmp_path / "absent.sgdir"), "--seed", "1"],
        "weights": ["--direction", rain, "--weight", "1", "--weight", "2", "--seed", "1"],
        "no source": ["--direction", rain],
        "no name": ["--direction", f"{rain}:thunder", "--seed", "1"],
        "strength 1e300": ["--direction", rain, "--seed", "1", "--strength", "1e300"],  # finite in Python, inf in float32
        "weight 1e300": ["--direction", rain, "--weight", "1e300", "--seed", "1"],
        "offset beyond float32 at this strength": ["--direction", str(tmp_path / "huge.sgdir"), "--seed", "1", "--strength", "100"],
        "10000 strengths": ["--direction", rain, "--seed", "1", "--strength", ",".join(["0.5"] * 10000)],
    }[case]
    (tmp_path / "bad.sgdir").write_bytes((folder / "raining.sgdir").read_bytes()[:100])
    huge = SoundDirection.load(rain)
    huge.offset = torch.full_like(huge.offset, 1e37)
    huge.save(tmp_path / "huge.sgdir")
    out = tmp_path / "out"
    result = run("apply", *args, "--out", str(out))
    assert_one_error_line(result, message)
    assert not out.exists()


@pytest.mark.parametrize("recorded", ["x" * 5000, "the generator file itself"])
def test_apply_loads_only_a_manifest_name_or_a_file_the_user_names(library, tiny_generator_file, tmp_path, recorded):
    """A direction's record is data from elsewhere: a file it names is loaded only when given as --generator."""
    folder, _ = library
    direction = SoundDirection.load(folder / "raining.sgdir")
    direction.generator["name"] = str(tiny_generator_file) if recorded == "the generator file itself" else recorded
    direction.save(tmp_path / "recorded.sgdir")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["apply", "--direction", str(tmp_path / "recorded.sgdir"), "--seed", "1", "--out", str(out)])
    assert_one_error_line(result, "not a manifest name; pass --generator NAME_OR_FILE")
    assert len(result.stderr) < 400 and not out.exists()
    result = CliRunner().invoke(main, ["apply", "--direction", str(tmp_path / "recorded.sgdir"), "--seed", "1", "--out", str(out),
                                       "--generator", str(tiny_generator_file)])
    assert result.exit_code == 0, result.output
    assert (out / "seed0001" / "raining_s1.png").is_file()


@pytest.mark.parametrize("case, message", [
    ("no sound", "pass --audio FILE"),
    ("no source", "pass the images to learn over"),
    ("bad layers", "is not a W+ row"),
    ("layers out of range", "layers must be W+ row indices"),
    ("silent", "silent"),
    ("foreign file", "not an sgsim direction file"),
    ("foreign record", "out.json exists and sgsim direction did not write it"),
    ("unknown loss term", "unknown loss term 'bogus'"),
])
def test_direction_refuses_bad_input_in_one_line_and_writes_nothing(run, sounds, tmp_path, tiny_generator_file, case, message):
    import soundfile

    soundfile.write(tmp_path / "quiet.wav", np.zeros(44100, dtype=np.float32), 44100)
    (tmp_path / "foreign.sgdir").write_bytes(tiny_generator_file.read_bytes())
    if case == "foreign record":
        (tmp_path / "out.json").write_text("{}")  # the record's name beside --out out.sgdir holds someone else's file
    rain = ["--audio", str(sounds["raining"])]
    out = tmp_path / "out.sgdir"
    args = {
        "no sound": ["--seeds", "0-1", "--out", str(out)],
        "no source": [*rain, "--out", str(out)],
        "bad layers": [*rain, "--seeds", "0", "--layers", "a-b", "--out", str(out)],
        "layers out of range": [*rain, "--seeds", "0", "--layers", "0-40", "--out", str(out)],
        "silent": ["--audio", str(tmp_path / "quiet.wav"), "--seeds", "0", "--out", str(out)],
        "foreign file": [*rain, "--seeds", "0", "--out", str(tmp_path / "foreign.sgdir")],
        "foreign record": [*rain, "--seeds", "0", "--out", str(out)],
        "unknown loss term": [*rain, "--seeds", "0", "--weight", "bogus=1", "--out", str(out)],
    }[case]
    before = (tmp_path / "foreign.sgdir").read_bytes()
    result = run("direction", *args)
    assert_one_error_line(result, message)
    assert not out.exists() and (tmp_path / "foreign.sgdir").read_bytes() == before


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_apply_to_a_photo_inverts_it_first_and_names_its_folder_by_the_stem(run, library, tmp_path, tiny_generator_file):
    folder, _ = library
    assert CliRunner().invoke(main, ["generate", "--seed", "2", "--generator", str(tiny_generator_file),
                                     "--out", str(tmp_path / "gen")]).exit_code == 0
    photo = tmp_path / "portrait.png"
    photo.write_bytes((tmp_path / "gen" / "seed0002.png").read_bytes())
    result = run("apply", "--direction", str(folder / "fire.sgdir"), "--image", str(photo), "--invert-steps", "3",
                 "--strength", "1", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "invert (optimise): " in result.output and "/3 [" in result.output  # the inversion is never silent
    assert sorted(p.name for p in (tmp_path / "a" / "portrait").iterdir()) == ["fire_s1.png", "source.png"]
    latents = np.load(tmp_path / "a" / "latents.npz")
    fire = SoundDirection.load(folder / "fire.sgdir")
    np.testing.assert_allclose(latents["applied"][0, 0], latents["sources"][0] + fire.offset.numpy(), rtol=0, atol=1e-6)


def test_direction_with_steps_auto_says_and_records_how_many_steps_ran(run, sounds, tmp_path):
    from sgsim.editing.stopping import AUTO_RULE

    out = tmp_path / "rain.sgdir"
    result = run("direction", "--audio", str(sounds["raining"]), "--seeds", "0-1", "--holdout", "0", "--steps", "auto",
                 "--sources-per-step", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    (direction,) = load_directions(out).values()
    used = direction.settings["steps_used"]
    assert direction.settings["steps"] == "auto" and AUTO_RULE.min_steps <= used <= AUTO_RULE.max_steps
    assert f"steps auto: {direction.settings['steps_reason']}\n" in result.output
    assert json.loads((tmp_path / "rain.json").read_text())["settings"]["steps"] == "auto"
