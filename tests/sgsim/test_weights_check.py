"""A weights file is imported under a name only when it holds what that name promises: a generator's format,
resolution and W+ rows, an audio encoder's architecture and embedding size, a CLIP's model and embedding size."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

import checkpoints
from checkpoints import manifest
from sgsim.cli import main
from sgsim.weights_check import WeightsMismatchError, import_weights, mismatch


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def entries_as(monkeypatch):
    """entries_as(name, **changes): make the manifest entry `name` promise something else for one test."""
    formats, kinds, table = manifest._load()
    table = dict(table)
    monkeypatch.setattr(manifest, "_load", lambda: (formats, kinds, table))

    def change(name: str, **changes) -> None:
        table[name] = dataclasses.replace(table[name], **changes)

    return change


def cached(home, name):
    return home / "weights" / checkpoints.entry(name).filename


def test_a_small_generator_is_refused_as_the_1024_px_ffhq_in_one_line(home, tiny_generator_file, entries_as):
    problem = mismatch(tiny_generator_file, "ffhq")
    assert problem == ("it holds safetensors file, 32 px, 8 W+ rows where ffhq has nvidia-pickle file, 1024 px, "
                       "18 W+ rows")
    entries_as("ffhq", format="safetensors")  # past the container check, which refuses a safetensors file as a pickle
    result = CliRunner().invoke(main, ["weights", "import", str(tiny_generator_file), "--name", "ffhq"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "is not the ffhq weights" in result.output and "--force" in result.output
    assert not cached(home, "ffhq").exists()


def test_a_generator_of_the_promised_size_is_imported_and_verifies_ok(home, tiny_generator_file, entries_as):
    entries_as("landscape", format="safetensors", expects={"resolution": 32, "w_plus_rows": 8})
    assert mismatch(tiny_generator_file, "landscape") is None
    assert import_weights(tiny_generator_file, "landscape") == cached(home, "landscape")
    verified = CliRunner().invoke(main, ["weights", "verify", "landscape"])
    assert verified.exit_code == 0 and "--force" not in verified.output


def test_force_keeps_a_wrong_generator_and_verify_says_so(home, tiny_generator_file, entries_as):
    entries_as("landscape", format="safetensors")  # still 256 px, 14 rows
    with pytest.raises(WeightsMismatchError, match="32 px, 8 W\\+ rows where landscape has 256 px, 14 W\\+ rows"):
        import_weights(tiny_generator_file, "landscape")
    result = CliRunner().invoke(main, ["weights", "import", str(tiny_generator_file), "--name", "landscape", "--force"])
    assert result.exit_code == 0, result.output
    record = json.loads((home / "weights" / "checksums.json").read_text())["landscape"]
    assert record["forced"] == "it holds 32 px, 8 W+ rows where landscape has 256 px, 14 W+ rows"
    verified = CliRunner().invoke(main, ["weights", "verify"])
    assert verified.exit_code == 0
    assert verified.output.startswith("landscape: ok sha256 ")
    assert "imported with --force although it holds 32 px, 8 W+ rows" in verified.output


def test_a_file_that_is_no_generator_is_refused(home, tmp_path, encoder_checkpoint_file, entries_as):
    entries_as("landscape", format="rosinality-pt")
    problem = mismatch(encoder_checkpoint_file, "landscape")
    assert problem.startswith("it is not a generator this toolkit reads")


def test_audio_encoder_weights_must_load_as_the_named_encoder(home, encoder_checkpoint_file):
    assert mismatch(encoder_checkpoint_file, "sgsim-resnet18") is None
    problem = mismatch(encoder_checkpoint_file, "wav2clip")
    assert problem.startswith("it does not load as the wav2clip audio encoder")


def test_encoder_embedding_size_is_checked(home, encoder_checkpoint_file, entries_as):
    entries_as("sgsim-resnet18", expects={"encoder": "sgsim-resnet18", "embed_dim": 1024})
    assert mismatch(encoder_checkpoint_file, "sgsim-resnet18") == (
        "it holds 512-d embeddings where sgsim-resnet18 has 1024-d embeddings")


def test_clip_weights_must_be_the_named_model_with_its_embedding_size(home, tiny_clip_file, tiny_clip_name, entries_as):
    entries_as("clip-vit-b-32", format="torch-state-dict", expects={"clip_model": tiny_clip_name, "embed_dim": 512})
    assert mismatch(tiny_clip_file, "clip-vit-b-32") is None
    entries_as("clip-vit-b-32", expects={"clip_model": tiny_clip_name, "embed_dim": 1024})
    assert mismatch(tiny_clip_file, "clip-vit-b-32") == "it holds 512-d embeddings where clip-vit-b-32 has 1024-d embeddings"
    assert mismatch(tiny_clip_file, "clip-rn50").startswith("it does not load as CLIP RN50-quickgelu")


def test_verify_finds_a_wrong_file_put_into_the_cache_by_hand(home, tiny_generator_file, entries_as):
    entries_as("landscape", format="safetensors")  # 256 px, 14 rows promised
    cached(home, "landscape").parent.mkdir(parents=True)
    cached(home, "landscape").write_bytes(tiny_generator_file.read_bytes())
    result = CliRunner().invoke(main, ["weights", "verify", "landscape"])
    assert result.exit_code == 1
    assert "landscape: FAILED: " in result.output and "is not the landscape weights: it holds 32 px, 8 W+ rows" in result.output
    assert "1 of 1 weights files failed verification" in result.output
