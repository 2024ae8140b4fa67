"""`sgsim train-encoder` under torchrun (CPU, gloo, 2 processes): DistributedDataParallel with synchronised batch
norm and the loss over the global batch trains as one process with that batch, and resumes across a change in the
number of processes."""

from __future__ import annotations

import json

import pytest
import torch

from sgsim.training.trainer import FINAL_FILE, LOG_FILE, STATE_FILE, EncoderTrainer

# `sgsim` in a torchrun worker, with the tiny CLIP's open_clip config registered (the tiny_clip_saver fixture does so in-process).
DRIVER = '''
import os, sys
import open_clip
open_clip.add_model_config(os.environ["TINY_CLIP_CONFIG"])
from sgsim.cli import main
main(sys.argv[1:])
'''


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    path = tmp_path_factory.mktemp("driver") / "sgsim_driver.py"
    path.write_text(DRIVER)
    return path


def test_two_processes_resume_a_one_process_run_and_train_as_one_process(small_run, torchrun, driver, tmp_path):
    # A global batch of 8: 3 steps and a validation. The recipe's learning rate: at the tests' 0.05 a ResNet this small
    # amplifies float rounding (a different summation order, or our batch-norm formula in ONE process) to percents
    # within 3 steps, which no tolerance could tell from a mistake.
    config = small_run.config(epochs=1, lr=1e-3, lr_min=1e-4, checkpoint_every=1)
    reference = EncoderTrainer(config, small_run.train, small_run.clip, tmp_path / "one", small_run.val).run()
    # One process trains step 1 and is stopped; two processes of 4 clips each resume from its checkpoint and finish.
    EncoderTrainer(config, small_run.train, small_run.clip, tmp_path / "two", small_run.val).run(max_steps=1)
    args = [
        "train-encoder", str(small_run.csv), "--out", str(tmp_path / "two"), "--clip-model", small_run.clip_name,
        "--clip", str(small_run.clip_file), "--epochs", "1", "--batch-size", "4", "--lr", str(config.lr), "--lr-min", str(config.lr_min),
        "--workers", "0", "--checkpoint-every", "1", *[f"--front-end={key}={value}" for key, value in small_run.front_end.items()],
    ]
    run = torchrun(driver, *args)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert output.count("resuming at step 1") == 1 and "2 processes x 4 clips = a global batch of 8" in output  # rank 0 reports

    expected, actual = weights(tmp_path / "one" / FINAL_FILE), weights(tmp_path / "two" / FINAL_FILE)
    assert expected.keys() == actual.keys()
    for key in expected:  # batch-norm statistics included; float32 rounding is ~1e-5 of a tensor's largest value
        scale = expected[key].abs().max().item() if expected[key].is_floating_point() else 0
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-4 * scale, msg=key)
    assert weights(tmp_path / "two" / STATE_FILE)["step"] == 3
    history = json.loads((tmp_path / "two" / LOG_FILE).read_text())["history"]
    assert [entry["val_top1"] for entry in history] == [entry["val_top1"] for entry in reference.history]
    for mine, theirs in zip(history, reference.history):
        assert mine["losses"] == pytest.approx(theirs["losses"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
