"""Encoder training: it really learns, it resumes bit for bit, and its output is an ordinary sgsim-resnet18 checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from encoders import load_audio_encoder
from sgsim.cli import main
from sgsim.datasets import AudioDataset, Clip
from sgsim.errors import SgsimError
from sgsim.training.trainer import BEST_FILE, FINAL_FILE, STATE_FILE, EncoderTrainer


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def full_run(small_run, tmp_path_factory):
    """An uninterrupted 8-epoch run on the synthetic sound classes, with the untrained encoder's validation accuracy."""
    trainer = EncoderTrainer(small_run.config(), small_run.train, small_run.clip, tmp_path_factory.mktemp("full"), small_run.val)
    before = trainer.validate()
    return before, trainer.run()


def test_training_lifts_zero_shot_accuracy_from_chance_to_twice_chance(full_run, small_run):
    before, result = full_run
    chance = 100.0 / len(small_run.labels)
    assert before <= 1.5 * chance  # the untrained encoder guesses
    assert result.best_accuracy >= 2 * chance, [entry["val_top1"] for entry in result.history]
    assert [entry["epoch"] for entry in result.history] == list(range(1, 9))
    assert set(result.history[0]["losses"]) == {"text", "audio"}  # no frames in this dataset: no image loss


def test_output_is_an_sgsim_resnet18_checkpoint_in_the_official_layout(full_run):
    _, result = full_run
    saved = weights(result.out_dir / BEST_FILE)
    assert {key.split(".")[0] for key in saved} == {"conv", "feature_extractor"}
    encoder = load_audio_encoder("sgsim-resnet18", checkpoint=result.out_dir / BEST_FILE)
    assert encoder.encode(torch.randn(1, 44100) * 0.1, 44100).shape == (1, 512)
    load_audio_encoder("sgsim-resnet18", checkpoint=result.out_dir / FINAL_FILE)


def test_interrupted_run_resumes_to_the_same_weights_bit_for_bit(small_run, tmp_path):
    config = small_run.config(epochs=2, checkpoint_every=2)  # 3 steps per epoch: checkpoints at steps 2 and 4
    reference = EncoderTrainer(config, small_run.train, small_run.clip, tmp_path / "reference", small_run.val).run()

    interrupted = EncoderTrainer(config, small_run.train, small_run.clip, tmp_path / "resumed", small_run.val)
    assert interrupted.run(max_steps=5).steps == 5  # killed after step 5, mid-epoch: the last checkpoint is step 4
    assert not (tmp_path / "resumed" / FINAL_FILE).exists()
    resumed = EncoderTrainer(config, small_run.train, small_run.clip, tmp_path / "resumed", small_run.val)
    assert resumed.resume() and resumed.step == 4
    result = resumed.run()

    expected, actual = weights(tmp_path / "reference" / FINAL_FILE), weights(tmp_path / "resumed" / FINAL_FILE)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert result.history == [{**entry, "train_seconds": got["train_seconds"]} for entry, got in zip(reference.history, result.history)]
    state = weights(tmp_path / "resumed" / STATE_FILE)
    assert state["step"] == 6 and torch.equal(state["log_scale"], weights(tmp_path / "reference" / STATE_FILE)["log_scale"])


def test_resume_with_other_settings_is_refused(small_run, tmp_path):
    EncoderTrainer(small_run.config(epochs=1), small_run.train, small_run.clip, tmp_path, small_run.val).run()
    other = EncoderTrainer(small_run.config(epochs=1, lr=0.01), small_run.train, small_run.clip, tmp_path, small_run.val)
    with pytest.raises(SgsimError, match=r"other settings \(lr=0.05 \(now 0.01\)\)"):
        other.resume()


def _mean_cosine_to_own_text(encoder_file, small_run) -> float:
    """Mean cosine between each validation clip's embedding and its label's CLIP text embedding."""
    from sgsim.audio import load_audio

    encoder = load_audio_encoder("sgsim-resnet18", checkpoint=encoder_file)
    encoder.front_end = type(encoder.front_end)(sample_rate=encoder.front_end.sample_rate, **small_run.front_end)
    clips = small_run.val.clips
    with torch.no_grad():
        audio = torch.cat([encoder.encode(torch.from_numpy(load_audio(c.path, 44100, mono=True)[0])[None], 44100) for c in clips])
        text = small_run.clip.encode_text([c.label for c in clips])
    return float(torch.nn.functional.cosine_similarity(audio, text, dim=-1).mean())


def test_the_text_cosine_term_makes_clips_point_at_their_own_text(full_run, small_run, tmp_path):
    _, plain = full_run
    pulled = EncoderTrainer(small_run.config(text_cosine=1.0), small_run.train, small_run.clip, tmp_path, small_run.val).run()
    assert set(pulled.history[0]["losses"]) == {"text", "text_cosine", "audio"}
    assert 0 < pulled.history[-1]["losses"]["text_cosine"] < pulled.history[0]["losses"]["text_cosine"] <= 2
    with_term = _mean_cosine_to_own_text(pulled.out_dir / FINAL_FILE, small_run)
    without = _mean_cosine_to_own_text(plain.out_dir / FINAL_FILE, small_run)
    assert with_term > without + 0.2, (with_term, without)


def test_a_state_written_before_a_setting_existed_resumes_with_its_default(small_run, tmp_path):
    EncoderTrainer(small_run.config(epochs=1), small_run.train, small_run.clip, tmp_path, small_run.val).run()
    state = weights(tmp_path / STATE_FILE)
    del state["config"]["text_cosine"]
    torch.save(state, tmp_path / STATE_FILE)
    assert EncoderTrainer(small_run.config(epochs=2), small_run.train, small_run.clip, tmp_path, small_run.val).resume()
    with pytest.raises(SgsimError, match=r"text_cosine=0.0 \(now 1.0\)"):
        EncoderTrainer(small_run.config(epochs=2, text_cosine=1.0), small_run.train, small_run.clip, tmp_path, small_run.val).resume()


def test_a_frame_per_clip_adds_the_audio_image_loss(small_run, tmp_path):
    from PIL import Image

    clips = []
    for number, clip in enumerate(small_run.train.clips):
        frame = tmp_path / f"{number}.png"
        Image.new("RGB", (40, 40), (60 * small_run.labels.index(clip.label), 90, 30)).save(frame)
        clips.append(Clip(clip.path, clip.label, clip.fold, frame))
    train = AudioDataset("frames", tmp_path, small_run.train.classes, clips)
    seen = []
    trainer = EncoderTrainer(small_run.config(epochs=1), train, small_run.clip, tmp_path / "out", None)
    trainer.run(max_steps=1, progress=lambda step, losses: seen.append(losses))
    assert set(seen[0]) == {"text", "image", "audio", "scale"} and all(torch.isfinite(torch.tensor(v)) for v in seen[0].values())
    assert seen[0]["scale"] == pytest.approx(1 / 0.07, rel=0.01)  # CLIP's temperature, not exp(0.07)


def test_train_encoder_command_writes_a_loadable_encoder_and_resumes(small_run, tmp_path):
    args = [
        "train-encoder", str(small_run.csv), "--out", str(tmp_path / "run"), "--clip-model", small_run.clip_name,
        "--clip", str(small_run.clip_file), "--epochs", "1", "--batch-size", "8", "--lr", "0.05", "--workers", "0", "--device", "cpu",
        *[f"--front-end={key}={value}" for key, value in small_run.front_end.items()],
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "epoch 1: validation zero-shot top-1" in first.output and (tmp_path / "run" / BEST_FILE).is_file()
    again = CliRunner().invoke(main, args[:-3] + ["--epochs", "2"] + args[-3:])
    assert again.exit_code == 0, again.output
    assert "resuming at step 3" in again.output and "epoch 2: validation" in again.output
    load_audio_encoder("sgsim-resnet18", checkpoint=tmp_path / "run" / FINAL_FILE)
    written = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "run").iterdir()}
    finished = CliRunner().invoke(main, args[:-3] + ["--epochs", "2"] + args[-3:])
    assert finished.exit_code == 0, finished.output
    assert f"{tmp_path / 'run'} is complete: all 6 steps are trained" in finished.output
    assert "%|" not in finished.output  # no progress bar for work that is done
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "run").iterdir()} == written
    record = json.loads((tmp_path / "run" / "run.json").read_text())  # the record every command writes
    assert record["command"] == "train-encoder" and record["argv"][1] == "train-encoder" and record["versions"]["torch"]
    assert record["config"]["epochs"] == 2 and len(record["history"]) == 2 and set(record["outputs"]) == {FINAL_FILE, BEST_FILE}


def test_a_trained_encoder_drives_sgsim_edit(full_run, small_run, tiny_generator_file, tiny_clip_space, tmp_path):
    _, result = full_run
    audio = small_run.train.clips[0].path
    args = [
        "edit", "--audio", str(audio), "--seed", "1", "--generator", str(tiny_generator_file),
        "--encoder-checkpoint", str(result.out_dir / BEST_FILE), "--steps", "2", "--out", str(tmp_path / "edit"), "--device", "cpu",
    ]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "edit" / "comparison.png").is_file()
