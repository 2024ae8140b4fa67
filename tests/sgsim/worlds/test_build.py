"""`sgsim world build shapes --scale toy`: every stage yields a network that loads, and a resumed build skips them."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from sgsim.worlds.build import WorldBuild

    out = tmp_path_factory.mktemp("world")
    WorldBuild(out, seed=0, scale="toy").run()
    return out


def test_every_stage_leaves_a_loadable_network(built):
    from encoders.clip import load_clip
    from encoders.registry import load_audio_encoder
    from sgsim.style_encoder_file import generator_sha256, read_style_encoder
    from sgsim.worlds import resolve_world
    from stylegan2 import load_generator

    files = resolve_world("shapes", built)
    G = load_generator(files.generator)
    assert G(torch.zeros(1, G.z_dim)).shape == (1, 3, 32, 32)
    clip = load_clip(files.clip_model, pretrained=files.clip)
    assert clip.embed_dim == 512 and clip.image_size == 32
    encoder = load_audio_encoder(files.encoder_name, checkpoint=files.encoder)
    assert encoder.encode(torch.randn(1, 44100), 44100).shape == (1, 512)
    assert encoder.front_end.frames == 192  # the world's short window, from the registration
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trained against this very generator: no mismatch warning
        photo_encoder = read_style_encoder(files.style_encoder, G)
    assert (photo_encoder.head, photo_encoder.encoder.config.num_ws, photo_encoder.encoder.config.input_size) == ("e4e", 8, 32)
    record = json.loads((built / "run.json").read_text())
    assert set(record["stages"]) == {"speech", "generator", "style_encoder", "clip", "encoder"}
    assert 0 <= record["stages"]["clip"]["zero_shot"]["colour"] <= 1
    measured = record["stages"]["style_encoder"]
    assert measured["config"]["generator_sha256"] == generator_sha256(G) and measured["held_out_renders"]["images"] == 48
    assert 0 < measured["held_out_renders"]["pixel_mse"] and 0 <= measured["held_out_renders"]["kept_colour"] <= 1
    assert not (built / "work").exists()


def test_the_build_stores_compact_weights_and_example_sounds(built):
    import soundfile
    from safetensors.torch import load_file

    from sgsim.worlds import resolve_world
    from sgsim.worlds.build import DATASET
    from sgsim.worlds.shapes import WORDS
    from stylegan2 import load_generator

    files = resolve_world("shapes", built)
    assert {v.dtype for v in load_file(files.clip).values() if v.is_floating_point()} == {torch.float16}
    assert {v.dtype for v in torch.load(files.encoder, weights_only=True).values() if v.is_floating_point()} == {torch.float16}
    assert load_generator(files.generator).metadata["dataset"] == DATASET  # the world's preset is chosen by it
    assert sorted(p.name for p in files.audio.iterdir()) == sorted([f"{w}.flac" for w in WORDS] + ["sequence.flac", "sequence.json"])
    spans = json.loads((files.audio / "sequence.json").read_text())
    assert [s["word"] for s in spans] == ["red", "blue", "green"]
    assert soundfile.info(str(files.audio / "sequence.flac")).duration > spans[-1]["end"]


def test_a_resumed_build_skips_finished_stages(built):
    from sgsim.worlds.build import WorldBuild

    before = {path.name: path.stat().st_mtime_ns for path in built.iterdir() if path.is_file()}
    seen = []
    WorldBuild(built, seed=0, scale="toy", progress=lambda stage, *rest: seen.append(stage)).run()
    assert seen == []
    assert {path.name: path.stat().st_mtime_ns for path in built.iterdir() if path.is_file()} == before


def test_a_changed_generator_retrains_only_its_photo_encoder(built, tmp_path):
    from sgsim.style_encoder_file import generator_sha256
    from sgsim.worlds.build import WorldBuild
    from stylegan2 import load_generator, save_generator

    copy = tmp_path / "world"
    shutil.copytree(built, copy)
    G = load_generator(copy / "generator.safetensors")
    with torch.no_grad():
        G.synthesis.b4.const.add_(0.5)  # as a longer-trained generator would replace it
    save_generator(G, copy / "generator.safetensors")
    seen = set()
    record = WorldBuild(copy, seed=0, scale="toy", progress=lambda stage, *rest: seen.add(stage)).run()
    assert seen == {"style_encoder"}
    assert record["stages"]["style_encoder"]["config"]["generator_sha256"] == generator_sha256(G)


def test_another_seed_in_the_same_folder_is_refused(built):
    from sgsim.errors import SgsimError
    from sgsim.worlds.build import WorldBuild

    with pytest.raises(SgsimError, match="same --seed"):
        WorldBuild(built, seed=1, scale="toy")


def test_an_unbuilt_world_is_one_clear_error(tmp_path):
    from sgsim.worlds import WorldError, resolve_world

    with pytest.raises(WorldError, match="sgsim world build shapes"):
        resolve_world("shapes", tmp_path)
