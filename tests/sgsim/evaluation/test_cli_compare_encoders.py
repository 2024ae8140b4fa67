"""`sgsim compare-encoders` end to end on real ESC-50 clips, a seeded SGSIM checkpoint and a tiny CLIP."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal

import pytest
from click.testing import CliRunner

from sgsim.cli import main

CLIPS = ["1-115545-A-48.wav", "1-13572-A-46.wav", "2-109374-A-16.wav", "2-77346-A-46.wav", "3-139109-A-46.wav", "5-160614-C-48.wav"]


@pytest.fixture()
def small_esc50(shared_data, tmp_path):
    """Six esc50-mini clips (3 classes, folds 1, 2, 3, 5) in ESC-50's layout."""
    root = tmp_path / "esc50-six"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    lines = (shared_data / "esc50-mini" / "meta" / "esc50.csv").read_text().splitlines()
    (root / "meta" / "esc50.csv").write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.split(",")[0] in CLIPS]) + "\n")
    for name in CLIPS:
        shutil.copy(shared_data / "esc50-mini" / "audio" / name, root / "audio" / name)
    return root


def test_compare_encoders_writes_reports_and_reuses_the_cache(small_esc50, tmp_path, encoder_checkpoint_file, tiny_clip_space, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    args = [
        "compare-encoders", str(small_esc50), "--encoder", f"sgsim-resnet18={encoder_checkpoint_file}",
        "--clip", f"sgsim-resnet18={tiny_clip_space}", "--out", str(tmp_path / "report"), "--workers", "0", "--with-paper",
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "sgsim-resnet18 on esc50-six: 6 clips evaluated, 0 left out, 6 encoded, none from the cache" in first.output
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["encoders.csv", "encoders.json", "encoders.md", "encoders.png", "run.json"]
    record = json.loads((tmp_path / "report" / "run.json").read_text())  # the record every command writes
    assert record["command"] == "compare-encoders" and record["argv"][1] == "compare-encoders" and record["versions"]["torch"]
    assert record["weights"]["sgsim-resnet18"]["sha256"] and "run.json" in record["outputs"]
    rows = list(csv.DictReader((tmp_path / "report" / "encoders.csv").open()))
    ours = {(r["protocol"], r["fold"]) for r in rows if r["source"] == "ours"}
    assert ours == {(p, f) for p in ("zero-shot", "linear-probe") for f in ("1", "2", "3", "5", "mean")}
    assert any(r["source"] == "paper" for r in rows)
    report = json.loads((tmp_path / "report" / "encoders.json").read_text())
    assert report["results"][0]["clips"] == 6 and report["prompts"] == "sound"
    assert list((tmp_path / "home" / "embeddings").iterdir())  # the default cache lives under SGSIM_HOME

    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert "6 clips evaluated, 0 left out, 0 encoded, 6 from the cache" in second.output
    assert json.loads((tmp_path / "report" / "encoders.json").read_text())["results"][0]["protocols"] == report["results"][0]["protocols"]


def test_default_encoders_are_skipped_with_reasons_when_no_weights_are_present(small_esc50, tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-home"))
    result = CliRunner().invoke(main, ["compare-encoders", str(small_esc50), "--out", str(tmp_path / "report")])
    assert result.exit_code != 0
    assert "skipping sgsim-resnet18: the sgsim-resnet18 weights" in result.output and "sgsim weights download" in result.output
    assert "skipping sgsim-resnet50: no published weights; pass --encoder NAME=CHECKPOINT" in result.output
    assert "no encoder could be evaluated" in result.output
    assert not (tmp_path / "report").exists()


def test_bad_encoder_option_is_a_usage_error(small_esc50):
    result = CliRunner().invoke(main, ["compare-encoders", str(small_esc50), "--encoder", "sgsim-resnet18="])
    assert result.exit_code == 2 and "expected NAME or NAME=PATH" in result.output


def test_clip_for_an_encoder_not_compared_is_a_usage_error(small_esc50, encoder_checkpoint_file):
    result = CliRunner().invoke(main, [
        "compare-encoders", str(small_esc50), "--encoder", f"sgsim-resnet18={encoder_checkpoint_file}", "--clip", "wav2clip=x.pt",
    ])
    assert result.exit_code == 2 and "wav2clip is not among the encoders compared" in result.output


def test_missing_dataset_is_one_line_and_a_non_zero_exit(tmp_path):
    result = CliRunner().invoke(main, ["compare-encoders", str(tmp_path / "nowhere"), "--encoder", "sgsim-resnet18"])
    assert result.exit_code == 1 and "no such dataset" in result.output and "Traceback" not in result.output


def test_fifo_folder_and_symlink_loop_named_like_clips_are_skipped(small_esc50, tmp_path, encoder_checkpoint_file, tiny_clip_space, monkeypatch):
    """A FIFO named x.wav used to hang the run forever (the cache hashed it); a folder or a loop aborted it."""
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    classes = tmp_path / "classes"
    for index, name in enumerate(CLIPS):
        folder = classes / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(small_esc50 / "audio" / name, folder / name)
    os.mkfifo(classes / "class0" / "x.wav")
    (classes / "class1" / "y.wav").mkdir()
    (classes / "class1" / "z.wav").symlink_to(classes / "class1" / "z.wav")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("compare-encoders blocked on a non-regular file"))
    signal.alarm(300)
    try:
        result = CliRunner().invoke(main, [
            "compare-encoders", str(classes), "--encoder", f"sgsim-resnet18={encoder_checkpoint_file}",
            "--clip", f"sgsim-resnet18={tiny_clip_space}", "--out", str(tmp_path / "report"), "--workers", "0",
        ])
    finally:
        signal.alarm(0)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "6 clips evaluated, 3 left out" in result.output


def test_two_checkpoints_of_one_encoder_get_rows_of_their_own(small_esc50, tmp_path, encoder_checkpoint_file, tiny_clip_space, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    trained = tmp_path / "epoch_30.pth"
    shutil.copy(encoder_checkpoint_file, trained)
    result = CliRunner().invoke(main, [
        "compare-encoders", str(small_esc50), "--encoder", f"sgsim-resnet18={encoder_checkpoint_file}",
        "--encoder", f"mine:sgsim-resnet18={trained}", "--encoder", f"sgsim-resnet18={trained}", "--no-linear-probe",
        "--clip", f"sgsim-resnet18={tiny_clip_space}", "--out", str(tmp_path / "report"), "--workers", "0", "--no-cache",
    ])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "report" / "encoders.csv").open()))
    means = [r["method"] for r in rows if r["fold"] == "mean"]
    assert means == [f"sgsim-resnet18 ({encoder_checkpoint_file.stem})", "mine", "sgsim-resnet18 (epoch_30)"]
    assert len(rows) == 3 * 5  # each: four folds and the mean, no duplicated fold rows
    report = json.loads((tmp_path / "report" / "encoders.json").read_text())
    assert [r["model"] for r in report["results"]] == ["sgsim-resnet18"] * 3


@pytest.mark.parametrize("value", ["mine:", ":sgsim-resnet18", "mine:sgsim-resnet18="])
def test_bad_labelled_encoder_is_a_usage_error(small_esc50, value):
    result = CliRunner().invoke(main, ["compare-encoders", str(small_esc50), "--encoder", value])
    assert result.exit_code == 2 and "LABEL:NAME=PATH" in result.output


def test_bf16_embeddings_are_cached_apart_from_fp32_and_give_the_same_zero_shot_results(small_esc50, tmp_path, encoder_checkpoint_file,
                                                                                        tiny_clip_space, monkeypatch):
    """--precision bf16 is opt-in (fp32 is the default), never served fp32's cached embeddings nor serves its own to fp32,
    and on the real clips predicts what fp32 predicts (docs/performance.md#evaluation-throughput: the tolerance of bf16 embeddings)."""
    from sgsim.evaluation.embeddings import EMBEDDING_PRECISIONS

    option = next(p for p in main.commands["compare-encoders"].params if p.name == "precision")
    assert tuple(option.type.choices) == EMBEDDING_PRECISIONS and option.default == "fp32"
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))

    def compare(*precision: str) -> tuple[str, dict]:
        out = tmp_path / f"report-{'-'.join(precision) or 'default'}"
        result = CliRunner().invoke(main, [
            "compare-encoders", str(small_esc50), "--encoder", f"sgsim-resnet18={encoder_checkpoint_file}", "--no-linear-probe",
            "--clip", f"sgsim-resnet18={tiny_clip_space}", "--out", str(out), "--workers", "0", *precision,
        ])
        assert result.exit_code == 0, result.output
        return result.output, json.loads((out / "encoders.json").read_text())

    fp32_output, fp32 = compare()
    assert "6 encoded" in fp32_output and "audio embeddings in fp32" in fp32_output
    bf16_output, bf16 = compare("--precision", "bf16")
    assert "6 encoded" in bf16_output and "audio embeddings in bf16" in bf16_output  # fp32's cache was not served
    assert "0 encoded" in compare("--precision", "fp32")[0] and "0 encoded" in compare("--precision", "bf16")[0]
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["results"][0]["protocols"] == fp32["results"][0]["protocols"]  # per fold and per class: the same predictions


def test_unknown_precision_is_a_usage_error(small_esc50):
    result = CliRunner().invoke(main, ["compare-encoders", str(small_esc50), "--encoder", "sgsim-resnet18", "--precision", "mixed"])
    assert result.exit_code == 2 and "'mixed' is not one of 'fp32', 'bf16'" in result.output


def test_the_prompt_choices_are_the_prompt_sets():
    from sgsim.evaluation.prompts import PROMPT_TEMPLATES

    option = next(p for p in main.commands["compare-encoders"].params if p.name == "prompts")
    assert tuple(option.type.choices) == tuple(PROMPT_TEMPLATES) and option.default in PROMPT_TEMPLATES
