"""Every command on a tiny StyleGAN3 generator: generate (with the input transform), edit (W+ rows as the network has
them), invert, direction / apply (the direction records the architecture), video (with a moving camera), batch, demo."""

from __future__ import annotations

import functools

import json
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main
from sgsim.editing import SoundDirection
from sgsim.latents import read_latent_file

STEPS = "3"
NUM_WS = 8  # 6 layers + the Fourier input + ToRGB


@pytest.fixture(scope="module")
def sg3_file(tmp_path_factory):
    """A 32 px StyleGAN3-R generator (8 W+ rows of 32) in sgsim's safetensors format."""
    from stylegan2 import save_generator
    from stylegan2.networks_stylegan3 import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                      synthesis_kwargs={"channel_base": 512, "channel_max": 32, "num_layers": 6, "conv_kernel": 1,
                                        "use_radial_filters": True})
        with torch.no_grad():  # as after training: the first W+ row turns and shifts the Fourier features
            G.synthesis.input.affine.weight.normal_(0, 0.3)
    return save_generator(G, tmp_path_factory.mktemp("sg3") / "tiny-sg3r.safetensors")


@pytest.fixture(scope="module")
def run(run, sg3_file):
    """tests/sgsim/conftest.py's run, with the tiny StyleGAN3-R generator instead of the StyleGAN2 one."""
    return functools.partial(run, generator=sg3_file)


@pytest.fixture(scope="module")
def sounds(shared_data):
    return {name: shared_data / "audio" / f"{name}.wav" for name in ("raining", "fire")}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_generate_moves_the_picture_with_translate_and_rotate(run, tmp_path):
    assert run("generate", "--seeds", "0", "--out", str(tmp_path / "still")).exit_code == 0
    moved = run("generate", "--seeds", "0", "--out", str(tmp_path / "moved"), "--translate", "0.25,0", "--rotate", "0")
    assert moved.exit_code == 0, moved.output
    still, shifted = pixels(tmp_path / "still" / "seed0000.png"), pixels(tmp_path / "moved" / "seed0000.png")
    assert np.abs(still - shifted).mean() > 1  # the picture moved
    # A quarter of the width to the right: the moved image's columns 8.. show the still image's columns ..24.
    assert np.abs(still[:, :24] - shifted[:, 8:]).mean() < np.abs(still - shifted).mean()
    assert read_latent_file(tmp_path / "moved" / "seed0000.npz").latent.shape == (NUM_WS, 32)
    record = json.loads((tmp_path / "moved" / "run.json").read_text())
    assert record["camera"] == {"translate": [0.25, 0.0], "rotate": 0.0, "pan": [0.0, 0.0], "spin": 0.0}


def test_translate_on_a_stylegan2_generator_is_one_line(tmp_path, tiny_generator_file, one_error_line):
    result = CliRunner().invoke(main, ["generate", "--seeds", "0", "--out", str(tmp_path / "x"), "--rotate", "10",
                                       "--generator", str(tiny_generator_file)])
    assert result.exit_code == 1 and "picture cannot move" in one_error_line(result)
    assert not (tmp_path / "x").exists()


def test_a_bad_translate_is_a_usage_error(run, tmp_path):
    result = run("generate", "--seeds", "0", "--out", str(tmp_path / "x"), "--translate", "1", networks=False)
    assert result.exit_code == 2 and "is not 2 comma-separated numbers" in result.output


def test_edit_moves_the_w_plus_rows_of_the_network(run, sounds, tmp_path):
    out = tmp_path / "rain"
    result = run("edit", "--audio", str(sounds["raining"]), "--text", "a fire", "--mix", "layers", "--seed", "3",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    latents = np.load(out / "latents.npz")
    assert latents["source"].shape == (NUM_WS, 32) and latents["edited"].shape == (1, NUM_WS, 32)
    moved = np.abs(latents["edited"][0] - latents["source"]).max(axis=1)
    assert (moved > 0).all()  # the sound drives the coarse rows, the text the fine ones: every row of the 8 moved
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["mix_sound_rows"] == NUM_WS // 2


def test_edit_runs_in_bf16_on_a_stylegan3_generator(run, sounds, tmp_path):
    """bf16 is the CPU default where the CPU has native bfloat16: a StyleGAN3 network runs it under autocast (its
    convolutions in bf16), and the written image is rendered in fp32 from latents that moved."""
    out = tmp_path / "bf16"
    result = run("edit", "--audio", str(sounds["raining"]), "--seed", "3", "--precision", "bf16", "--out", str(out))
    assert result.exit_code == 0, result.output
    latents = np.load(out / "latents.npz")
    assert np.isfinite(latents["edited"]).all() and np.abs(latents["edited"][0] - latents["source"]).max() > 0
    assert json.loads((out / "run.json").read_text())["settings"]["precision"] == "bf16"


def test_invert_fits_a_latent_of_the_networks_rows(run, tmp_path, monkeypatch):
    assert run("generate", "--seeds", "5", "--out", str(tmp_path / "gen")).exit_code == 0
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))  # no LPIPS weights: the pixel loss, with a notice
    result = run("invert", "--image", str(tmp_path / "gen" / "seed0005.png"), "--out", str(tmp_path / "inv"),
                 "--steps", "3", "--refine-steps", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("note:") and "without LPIPS" in line for line in result.output.splitlines())
    with np.load(tmp_path / "inv" / "latent.npz") as stored:
        assert stored["w"].shape == (1, NUM_WS, 32)
        assert not any(key.startswith("noise.") for key in stored)  # StyleGAN3 has no noise inputs


def test_direction_records_the_stylegan3_architecture_and_apply_uses_it(run, sounds, tmp_path, tiny_generator_file):
    folder = tmp_path / "dirs"
    result = run("direction", "--audio", str(sounds["fire"]), "--seeds", "0-1", "--holdout", "0", "--out", str(folder))
    assert result.exit_code == 0, result.output
    fire = SoundDirection.load(folder / "fire.sgdir")
    assert fire.generator["architecture"]["family"] == "stylegan3" and tuple(fire.offset.shape) == (NUM_WS, 32)
    applied = run("apply", "--direction", str(folder / "fire.sgdir"), "--seed", "2", "--out", str(tmp_path / "applied"))
    assert applied.exit_code == 0, applied.output
    # On a StyleGAN2 generator the same file is refused, naming both architectures.
    refused = CliRunner().invoke(main, ["apply", "--direction", str(folder / "fire.sgdir"), "--seed", "2", "--out", str(tmp_path / "no"),
                                        "--generator", str(tiny_generator_file)])
    assert refused.exit_code == 1 and "another architecture" in refused.output and "stylegan3-r" in refused.output


def test_video_with_a_moving_camera(run, gap_track, tmp_path):
    track = gap_track(tmp_path / "track.wav", gap=1.0, sound=1.0)
    out = tmp_path / "clip.mp4"
    result = run("video", "--audio", str(track.path), "--seed", "1", "--out", str(out), "--fps", "4", "--window", "1",
                 "--camera", "0.05,0,10", "--translate", "0.1,0")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["settings"]["camera"] == {"translate": [0.1, 0.0], "rotate": 0.0, "pan": [0.05, 0.0], "spin": 10.0}


def test_batch_runs_on_a_stylegan3_generator(run, sounds, tmp_path):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"name,audio,seed\nfire4,{sounds['fire']},4\n")
    result = run("batch", str(jobs), "--out", str(tmp_path / "batch"), "--steps", STEPS)
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "batch" / "fire4" / "latents.npz")["edited"].shape == (1, NUM_WS, 32)


def test_the_demo_engine_edits_and_renders_on_a_stylegan3_generator(sg3_file, encoder_checkpoint_file, tiny_clip_space,
                                                                     sounds, tmp_path):
    from sgsim.demo import DemoEngine, EditRequest, build_editor

    editor = build_editor(str(sg3_file), "sgsim-resnet18", encoder_checkpoint_file, None, "cpu")
    engine = DemoEngine(editor, tmp_path, {"generator": str(sg3_file)})
    request = EditRequest(sound=sounds["fire"], sound_name="fire.wav", source=7, source_kind="seed", steps=int(STEPS))
    result = engine.edit(request, lambda *step: None, threading.Event())
    assert engine.render(result, 1.0).shape == (3, 32, 32)


@pytest.fixture(scope="module")
def sg3_engine(sg3_file, encoder_checkpoint_file, tiny_clip_space, tmp_path_factory):
    from sgsim.demo import DemoEngine, build_editor

    editor = build_editor(str(sg3_file), "sgsim-resnet18", encoder_checkpoint_file, None, "cpu")
    return DemoEngine(editor, tmp_path_factory.mktemp("results"), {"generator": str(sg3_file)})


def test_the_demo_moves_a_stylegan3_result_as_generate_translate_and_rotate_do(sg3_engine, sounds):
    from sgsim.camera import Camera
    from sgsim.demo import EditRequest

    camera = Camera(translate=(0.25, -0.1), rotate=30.0)
    request = EditRequest(sound=sounds["fire"], sound_name="fire.wav", source=7, source_kind="seed", steps=1, camera=camera)
    moved = sg3_engine.edit(request, lambda *step: None, threading.Event())
    still = sg3_engine.edit(EditRequest(**{**request.__dict__, "camera": Camera()}), lambda *step: None, threading.Event())
    for strength in (0.0, 1.0):
        latent = sg3_engine.latent_at(moved, strength)[None]
        expected = sg3_engine.editor.render(latent, camera.transforms([0.0]))  # as `sgsim generate --translate --rotate`
        torch.testing.assert_close(sg3_engine.render(moved, strength), expected[0], rtol=0, atol=1e-5)
    assert (sg3_engine.render(moved, 1.0) - sg3_engine.render(still, 1.0)).abs().mean() > 1e-2  # the picture moved
    assert moved.record["camera"] == {"translate": [0.25, -0.1], "rotate": 30.0, "pan": [0.0, 0.0], "spin": 0.0}
    assert still.record["camera"] is None


def test_the_demo_page_offers_translate_and_rotate_for_stylegan3_generators_only(sg3_engine, tiny_generator_file,
                                                                                 encoder_checkpoint_file, optional_import):
    optional_import("gradio")
    from sgsim.demo import DemoEngine, build_editor
    from sgsim.demo.page import DemoPage

    def camera_row_visible(engine) -> bool:
        config = DemoPage(engine).build().config
        (row,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "camera"]
        sliders = {c["props"].get("elem_id") for c in config["components"]} & {"translate-x", "translate-y", "rotate"}
        return row["props"]["visible"] and sliders == {"translate-x", "translate-y", "rotate"}

    sg2_editor = build_editor(str(tiny_generator_file), "sgsim-resnet18", encoder_checkpoint_file, None, "cpu")
    assert camera_row_visible(sg3_engine) and not camera_row_visible(DemoEngine(sg2_editor, sg3_engine.results, {}))


def test_a_moved_picture_on_a_stylegan2_generator_is_one_line_before_any_work(tiny_generator_file, encoder_checkpoint_file,
                                                                              tiny_clip_space, sounds, tmp_path):
    from sgsim.camera import Camera
    from sgsim.demo import DemoEngine, EditRequest, build_editor
    from sgsim.errors import SgsimError

    engine = DemoEngine(build_editor(str(tiny_generator_file), "sgsim-resnet18", encoder_checkpoint_file, None, "cpu"),
                        tmp_path, {})
    steps = []
    request = EditRequest(sound=sounds["fire"], sound_name="fire.wav", source=7, source_kind="seed", steps=1,
                          camera=Camera(rotate=10.0))
    with pytest.raises(SgsimError, match="picture cannot move"):
        engine.edit(request, lambda *step: steps.append(step), threading.Event())
    assert steps == []


def test_a_moving_camera_renders_each_frame_through_its_own_transform(sg3_file):
    from sgsim.camera import Camera
    from stylegan2 import load_generator

    G = load_generator(sg3_file)
    camera = Camera(translate=(0.1, 0.0), pan=(0.2, -0.1), spin=30.0)
    times = np.array([0.0, 0.5, 2.0])
    ws = G.mapping(torch.randn([1, 32], generator=torch.Generator().manual_seed(0)), None).repeat(3, 1, 1)
    with torch.no_grad():
        together = G.synthesis(ws, transforms=camera.transforms(times))
        for i, t in enumerate(times):
            G.synthesis.set_transform((0.1 + 0.2 * t, -0.1 * t), 30.0 * t)
            torch.testing.assert_close(together[i], G.synthesis(ws[i:i + 1])[0], rtol=0, atol=1e-5)
    assert (together[0] - together[2]).abs().mean() > 1e-3


@pytest.mark.parametrize("name", ["sg3t_32", "sg3r_16"])
def test_weights_convert_writes_a_native_file_that_renders_nvidias_images(tmp_path, name):
    from pathlib import Path

    from stylegan2 import load_generator

    pickle_path = Path(__file__).resolve().parents[1] / "data" / "stylegan3" / f"{name}.pkl"
    out = tmp_path / f"{name}.safetensors"
    result = CliRunner().invoke(main, ["weights", "convert", str(pickle_path), str(out)])
    assert result.exit_code == 0, result.output
    original, converted = load_generator(pickle_path), load_generator(out)
    assert converted.init_kwargs == original.init_kwargs and converted.metadata == original.metadata
    z = torch.randn([2, original.z_dim], generator=torch.Generator().manual_seed(0))
    c = torch.eye(original.c_dim)[:2] if original.c_dim else None
    with torch.no_grad():
        assert torch.equal(converted(z, c), original(z, c))


def test_edit_refuses_a_work_resolution_below_a_stylegan3_generators_top_in_one_line(run, sounds, tmp_path, one_error_line):
    result = run("edit", "--audio", str(sounds["raining"]), "--seed", "1", "--work-resolution", "16", "--out", str(tmp_path / "w"))
    assert "only StyleGAN2 skip generators" in one_error_line(result)
    assert not (tmp_path / "w").exists()
