"""`sgsim batch`: every job of a CSV in the layout of `sgsim edit`, grouped by source, resumable, bad rows recorded."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main

STEPS = "3"


@pytest.fixture(scope="module")
def run(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space):
    """Invoke `sgsim <command>` with the tiny networks; returns click's Result."""
    def invoke(command: str, *args: str):
        extra = ["--generator", str(tiny_generator_file), "--encoder-checkpoint", str(encoder_checkpoint_file), "--device", "cpu",
                 "--steps", STEPS]
        return CliRunner().invoke(main, [command, *args, *extra], catch_exceptions=False)

    return invoke


def write_jobs(path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)


def summary(out) -> list[dict]:
    with open(out / "summary.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_each_job_writes_the_folder_sgsim_edit_writes(run, shared_data, tmp_path):
    audio = shared_data / "audio"
    jobs = tmp_path / "jobs.csv"
    write_jobs(jobs, [
        {"name": "rain3", "audio": str(audio / "raining.wav"), "seed": "3", "strength": "0.5,1"},
        {"name": "fire3", "audio": str(audio / "fire.wav"), "seed": "3", "strength": "1"},
    ])
    batch = run("batch", str(jobs), "--out", str(tmp_path / "batch"))
    assert batch.exit_code == 0, batch.output
    edit = run("edit", "--audio", str(audio / "raining.wav"), "--audio", str(audio / "fire.wav"), "--seed", "3",
               "--strength", "0.5,1", "--out", str(tmp_path / "edit"))
    assert edit.exit_code == 0, edit.output
    rain = tmp_path / "batch" / "rain3"
    assert sorted(p.name for p in rain.iterdir()) == ["comparison.png", "latents.npz", "raining_s0.5.png", "raining_s1.png",
                                                       "run.json", "source.png"]
    assert sorted(p.name for p in (tmp_path / "batch" / "fire3").iterdir()) == ["comparison.png", "fire_s1.png", "latents.npz",
                                                                                 "run.json", "source.png"]
    # The two jobs share seed 3: one optimisation of both, the same as `sgsim edit` with both sounds.
    for job, name in (("rain3", "raining_s0.5.png"), ("rain3", "raining_s1.png"), ("fire3", "fire_s1.png"), ("fire3", "source.png")):
        batch_pixels = np.asarray(Image.open(tmp_path / "batch" / job / name), dtype=np.int16)
        edit_pixels = np.asarray(Image.open(tmp_path / "edit" / name), dtype=np.int16)
        assert np.abs(batch_pixels - edit_pixels).max() <= 1, (job, name)
    latents, edited = np.load(rain / "latents.npz"), np.load(tmp_path / "edit" / "latents.npz")
    np.testing.assert_allclose(latents["edited"], edited["edited"][:1], atol=1e-5)
    assert latents["swept"].shape == (1, 2, 8, 32)
    record = json.loads((rain / "run.json").read_text())
    assert record["command"] == "batch" and record["job"]["name"] == "rain3" and record["settings"]["strengths"] == [0.5, 1.0]
    assert list(record["final_losses"]) == ["raining.wav"] and record["source"]["seed"] == 3
    assert [row["status"] for row in summary(tmp_path / "batch")] == ["done", "done"]
