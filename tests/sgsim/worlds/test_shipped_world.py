"""The shapes world that ships in examples/worlds/shapes, checked with its judge at reduced counts: each network does
what scripts/bench_world.py measures it doing (README "The shapes world"), and an edit through sgsim's own path moves
a picture toward a colour and not away from it.

Each bound sits well under the full-count measurement, so only a real fault (a lost weight, a broken normalisation,
a misaligned encoder, a flipped sign) fails it; across CPUs a borderline edit may flip, which the margins absorb.
The world misses several of its goals (the edits above all); these tests hold it to what it does, not to the goals.
"""

import pytest
import torch

from sgsim.settings import EditSettings
from sgsim.worlds import BUNDLE_ROOT, resolve_world, world_networks

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def files():
    return resolve_world("shapes", BUNDLE_ROOT / "shapes")


@pytest.fixture(scope="module")
def settings(files):
    return world_networks(EditSettings(world="shapes"), files)


@pytest.fixture(scope="module")
def editor(settings):
    from sgsim.editing import Editor

    return Editor.from_pretrained(settings.generator, settings.encoder, encoder_checkpoint=settings.encoder_checkpoint,
                                  clip=settings.clip_weights, device="cpu")


def test_the_generator_draws_clean_pictures_in_every_colour(files):
    from sgsim.worlds.metrics import generator_metrics
    from sgsim.worlds.shapes import COLOURS
    from stylegan2 import load_generator

    measured = generator_metrics(load_generator(files.generator), 240, seed=7)
    assert measured["clean"] >= 0.6  # 0.74 over 1000 seeds
    per_colour = {c: sum(n for name, n in measured["counts"].items() if name.startswith(c)) for c in COLOURS}
    clean = sum(per_colour.values())
    assert all(n >= 0.1 * clean for n in per_colour.values()), per_colour  # about a quarter each


def test_clip_names_the_colour_and_shape_of_held_out_renders(files):
    from encoders.clip import load_clip
    from sgsim.worlds.metrics import clip_zero_shot

    measured = clip_zero_shot(load_clip(files.clip_model, pretrained=files.clip), 240, seed=31_337)
    assert measured["colour"] >= 0.95 and measured["shape"] >= 0.9, measured  # both 1.0 over 1200


def test_the_audio_encoder_names_words_of_held_out_voices(files):
    from encoders.clip import load_clip
    from encoders.registry import load_audio_encoder
    from sgsim.datasets import open_dataset
    from sgsim.worlds.metrics import encoder_zero_shot

    dataset = open_dataset(files.root / "speech" / "test.csv")
    measured = encoder_zero_shot(load_audio_encoder(files.encoder_name, checkpoint=files.encoder),
                                 load_clip(files.clip_model, pretrained=files.clip), dataset)
    assert measured["clips"] == 28
    assert measured["top1"] >= 0.8, measured  # 0.995 over the build's 210 held-out clips; chance is 1/7


def test_the_photo_encoder_reconstructs_held_out_renders(files):
    """The world's e4e encoder, chosen by the photo policy for the world's generator and run by its own path, keeps the
    colour and position of renders the generator never made: 96.8 % and 99.8 % of 500 held-out renders (run.json),
    against 21.6 % and 22.2 % for the mean latent's picture. Six of eight leaves room for a reconstruction whose hue or
    centroid sits at the judge's threshold to flip on another CPU. Shape is not asked: the generator draws squares."""
    from sgsim.photo_inversion import plan_photo_inversion, run_plan
    from sgsim.worlds.metrics import held_out_photos, photo_reconstruction
    from stylegan2 import load_generator

    G = load_generator(files.generator)
    plan = plan_photo_inversion(files.generator)
    assert (plan.method, plan.encoder) == ("e4e", str(files.style_encoder))
    photos, scene = held_out_photos(8)
    rebuilt = torch.cat([run_plan(G, photos[i:i + 1], plan).image for i in range(8)])
    with torch.no_grad():
        mean = G.synthesis(G.mapping.w_avg.reshape(1, 1, -1).expand(8, G.num_ws, -1), noise_mode="const")
    measured, baseline = photo_reconstruction(photos, scene, rebuilt), photo_reconstruction(photos, scene, mean)
    assert measured["kept_colour"] >= 6 / 8 and measured["kept_position"] >= 6 / 8, measured
    assert measured["pixel_mse"] < 0.25 * baseline["pixel_mse"], (measured, baseline)  # 0.020 against 0.358 over 500


def test_an_edit_toward_a_colour_reaches_it_and_one_away_from_it_does_not(editor, settings):
    """The same optimisation aimed at the colour word's text embedding and at minus it (a sign flipped between target
    and latent), with the world's defaults: the judge sees the colour after the first and never after the second. The
    world's edits are weak (README: a colour edit by text reaches its colour in 40 % of seeds; these eight reach 3 or 4
    on the default, ATEN_CPU_CAPABILITY=default and MKL_CBWR=COMPATIBLE kernel paths), so this asks for one of eight.
    At 50 steps it reached 1 or 0 depending on the kernel path: too few steps to test across CPUs."""
    from sgsim.editing import Target
    from sgsim.editing.targets import embed_target
    from sgsim.worlds.judged import Aim, score, seed_latents, source_seeds
    from sgsim.worlds.shapes import COLOURS, judge

    seeds, aims = [], []
    for colour in COLOURS:
        picked = source_seeds(editor.generator, Aim(colour=colour), 2, 10_000, settings.truncation)
        seeds += picked
        aims += [embed_target(Target(text=colour), editor.audio_encoder, editor.clip).mixed(1.0)] * len(picked)
    sources, toward = seed_latents(editor, seeds, settings.truncation), torch.stack(aims)
    run = editor.prepare_run(settings.precision, settings.loss_weights, settings.lambda_latent, settings.lambda_id)
    before = judge(editor.render(sources))
    # Both signs in one batch: each row's loss and Adam state are its own, and one batch of 16 costs less than two of 8.
    edited = editor.optimise(run, sources.repeat(2, 1, 1), torch.cat([toward, -toward]), steps=settings.steps, lr=settings.lr).latents
    reached = {}
    for sign, half in zip((1, -1), edited.chunk(2)):
        after = judge(editor.render(half))
        reached[sign] = sum(score(before, after, Aim(colour=COLOURS[i // 2]), 32)["per_edit"]["reached"][i] for i in range(len(seeds)))
    assert reached[1] >= 1 and reached[-1] == 0, reached


def test_the_spoken_sequence_has_targets_in_its_words_and_none_in_its_pauses(editor, files):
    """sgsim video's quiet windows on the world's own recording, with its own window: the pauses carry room noise above
    the fixed -60 dBFS floor, which the level under the track's loudest window catches."""
    import json

    import numpy as np

    from sgsim.audio import check_long_enough
    from sgsim.editing.video import QUIET_WINDOW_DBFS, embed_keyframes, keyframe_times, window_span
    from sgsim.worlds.checks import SEQUENCE_FILE, SEQUENCE_SPANS

    track, words = files.audio / SEQUENCE_FILE, json.loads((files.audio / SEQUENCE_SPANS).read_text())
    duration, window = check_long_enough(track), files.defaults()["video"]["window"]
    times = keyframe_times(duration, 0.5)
    targets = embed_keyframes(track, times, editor.audio_encoder, window)
    spans = [window_span(t, duration, window) for t in times]
    in_pause = np.array([all(start + length < w["start"] or start > w["end"] for w in words) for start, length in spans])
    assert in_pause.sum() >= 3 and (targets.levels_dbfs[in_pause] > QUIET_WINDOW_DBFS).all()
    assert not targets.audible[in_pause].any() and (targets.directions[in_pause] == 0).all()
    centres = [int(np.abs(times - (w["start"] + w["end"]) / 2).argmin()) for w in words]
    assert targets.audible[centres].all(), targets.levels_dbfs


def test_compare_encoders_reads_the_world_speech_by_default(files, tmp_path):
    import json

    from click.testing import CliRunner

    from sgsim.cli import main

    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["compare-encoders", "--world", "shapes", "--no-linear-probe", "--no-cache",
                                       "--workers", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["datasets"] == [str(files.root / "speech" / "test.csv")]
