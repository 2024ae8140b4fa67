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


UPDATE_TOLERANCE = 0.05  # relative L2 of the resumed steps' update, one process against two (reasoning in the test)


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
    start = weights(tmp_path / "two" / STATE_FILE)["encoder"]  # step 1, where both runs go on from
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
    for key in expected:  # batch-norm statistics included
        if not expected[key].is_floating_point():
            assert torch.equal(actual[key], expected[key]), key
            continue
        # Compared on what the two resumed steps changed (w_final - w_step1), in relative L2. Adam moves each weight
        # by lr * m/sqrt(v): a gradient summed in another order (two processes, synchronised batch norm) changes that
        # by its own relative rounding for most weights, but a weight whose gradient is within rounding of zero can
        # move anywhere in +-lr, so a max-abs bound either fails on some CPU or is so loose (2 lr per step) that a
        # run without gradient sync passes it. Those weights are few, so the update's relative L2 stays near the
        # gradients' rounding (<= 5e-3 measured on every tensor), while an unsynchronised or mis-sharded run moves
        # each tensor's update by a large fraction of itself; 0.05 sits between. The last term is the float32
        # rounding of the weights themselves (a few units in the last place of their norm).
        moved = (expected[key] - start[key]).norm()
        bound = UPDATE_TOLERANCE * moved + 8 * 2**-24 * expected[key].norm()
        assert (actual[key] - expected[key]).norm() <= bound, f"{key}: {(actual[key] - expected[key]).norm():.3e} > {bound:.3e}"
    assert weights(tmp_path / "two" / STATE_FILE)["step"] == 3
    history = json.loads((tmp_path / "two" / LOG_FILE).read_text())["history"]
    assert [entry["val_top1"] for entry in history] == [entry["val_top1"] for entry in reference.history]
    for mine, theirs in zip(history, reference.history):
        assert mine["losses"] == pytest.approx(theirs["losses"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
