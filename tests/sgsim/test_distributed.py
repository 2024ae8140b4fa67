"""sgsim under torchrun (CPU, gloo, 2 processes on 127.0.0.1): `sgsim batch` does every job exactly once, a rerun
none, and a rank that fails or hangs ends the whole run with a report instead of a hang."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from sgsim.distributed import Rank, shard

# Run `sgsim` in a torchrun worker with the tiny CLIP as the SGSIM encoders' space (as the tiny_clip_space fixture
# does in-process); FAULT=raise|hang makes rank 1 fail or hang when it starts its share of the jobs.
DRIVER = '''
import dataclasses, os, sys, time
import open_clip
from encoders.registry import ENCODERS
open_clip.add_model_config(os.environ["TINY_CLIP_CONFIG"])
ENCODERS["sgsim-resnet18"] = dataclasses.replace(ENCODERS["sgsim-resnet18"], clip_model=os.environ["TINY_CLIP_NAME"],
                                                  clip_weights=os.environ["TINY_CLIP_WEIGHTS"])
fault = os.environ.get("FAULT")
if fault and os.environ["RANK"] == "1":
    from sgsim import jobs
    def broken(self, group):
        if fault == "raise":
            raise RuntimeError("injected failure of rank 1")
        time.sleep(3600)
    jobs.JobRunner.run_group = broken
from sgsim.cli import main
main(sys.argv[1:])
'''


@pytest.fixture(scope="module")
def batch_driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "sgsim_driver.py"
    path.write_text(DRIVER)
    return path


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, shared_data) -> Path:
    """Five jobs over three sources (two share seed 1, two share seed 2)."""
    audio = shared_data / "audio"
    path = tmp_path_factory.mktemp("jobs") / "jobs.csv"
    rows = [("rain1", "raining.wav", 1), ("fire1", "fire.wav", 1), ("wind2", "wind.wav", 2), ("drill2", "drill.wav", 2),
            ("thunder3", "thunderstorm.wav", 3)]
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["name", "audio", "seed"])
        writer.writerows([name, str(audio / sound), seed] for name, sound, seed in rows)
    return path


def summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def batch_args(jobs: Path, out: Path, tiny_generator_file, encoder_checkpoint_file) -> list[str]:
    return ["batch", str(jobs), "--out", str(out), "--generator", str(tiny_generator_file), "--encoder-checkpoint",
            str(encoder_checkpoint_file), "--steps", "2"]


@pytest.mark.parametrize("world, weights, expected", [
    (2, None, [[0, 2, 4], [1, 3]]),
    (3, None, [[0, 3], [1, 4], [2]]),
    (2, [2, 2, 1], [[0, 2], [1]]),  # groups of 2, 2 and 1 jobs: 3 jobs to rank 0, 2 to rank 1
    (2, [1, 3, 1, 1], [[1], [0, 2, 3]]),  # the heaviest first, to rank 0
    (4, [1, 1], [[0], [1], [], []]),
])
def test_shards_cover_every_item_once_and_balance_the_weights(world, weights, expected):
    items = list(range(len(weights) if weights else 5))
    shares = [shard(items, Rank(rank, world), weights) for rank in range(world)]
    assert shares == expected
    assert sorted(item for share in shares for item in share) == items


@pytest.fixture(scope="module")
def first_run(torchrun, batch_driver, jobs, tmp_path_factory, tiny_generator_file, encoder_checkpoint_file):
    """`sgsim batch` of the five jobs under torchrun with 2 processes: (its output folder, the finished process)."""
    out = tmp_path_factory.mktemp("batch") / "out"
    return out, torchrun(batch_driver, *batch_args(jobs, out, tiny_generator_file, encoder_checkpoint_file))


def test_batch_under_torchrun_does_every_job_once_and_a_rerun_none(first_run, torchrun, batch_driver, jobs, tiny_generator_file,
                                                                   encoder_checkpoint_file):
    out, first = first_run
    assert first.returncode == 0, first.stdout + first.stderr
    lines = summary(out)
    assert [(row["name"], row["status"]) for row in lines] == [
        ("rain1", "done"), ("fire1", "done"), ("wind2", "done"), ("drill2", "done"), ("thunder3", "done")]
    # Seed 1's two jobs are one group on rank 0, seed 2's on rank 1, seed 3's job balances rank 0: no job ran twice.
    assert [row["rank"] for row in lines] == ["0", "0", "1", "1", "0"]
    assert (first.stdout + first.stderr).count("rain1: done") == 1
    assert sorted(p.name for p in out.iterdir()) == ["drill2", "fire1", "rain1", "summary.csv", "thunder3", "wind2"]
    assert all((out / row["name"] / "run.json").is_file() for row in lines)
    stamps = {row["name"]: (out / row["name"] / "run.json").stat().st_mtime_ns for row in lines}

    second = torchrun(batch_driver, *batch_args(jobs, out, tiny_generator_file, encoder_checkpoint_file))
    assert second.returncode == 0, second.stdout + second.stderr
    assert [row["status"] for row in summary(out)] == ["skipped"] * 5
    assert {name: (out / name / "run.json").stat().st_mtime_ns for name in stamps} == stamps


@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_a_rank_that_fails_or_hangs_ends_the_run_with_a_report(first_run, torchrun, batch_driver, jobs, tmp_path, tiny_generator_file,
                                                                encoder_checkpoint_file, fault):
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)  # rank 0's jobs are complete: it goes straight to collecting the outcomes
    (out / "summary.csv").unlink()
    result = torchrun(batch_driver, *batch_args(jobs, out, tiny_generator_file, encoder_checkpoint_file), FAULT=fault)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "ChildFailedError" in output  # torchrun's report names the failed rank
    if fault == "raise":
        assert "injected failure of rank 1" in output and "rank: 1" in output
    else:  # rank 0 gave up waiting for rank 1 after SGSIM_DISTRIBUTED_TIMEOUT (the torchrun fixture's); torchrun then stopped rank 1
        assert "rank: 0" in output
    assert not (out / "summary.csv").exists()  # no summary of a run that did not finish


@pytest.mark.parametrize("case, env, expected", [
    ("no MASTER_ADDR", {"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR='' and MASTER_PORT='' do not say where the ranks meet"),
    ("a peer that never comes", {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "SGSIM_DISTRIBUTED_TIMEOUT": "1"},
     "rank 0 of 2 could not join the job at 127.0.0.1:"),
    ("infinite timeout", {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "SGSIM_DISTRIBUTED_TIMEOUT": "inf"},
     "SGSIM_DISTRIBUTED_TIMEOUT='inf' must be a number of seconds > 0 and at most 604800"),
])
def test_a_job_that_cannot_form_is_one_line_and_a_run_alone_still_works(tmp_path, monkeypatch, free_port, one_error_line,
                                                                         case, env, expected):
    from click.testing import CliRunner

    from sgsim.cli import main

    jobs, out = tmp_path / "jobs.csv", tmp_path / "out"
    jobs.write_text("name,audio,seed\n")
    for name in ("MASTER_ADDR", "MASTER_PORT", "SGSIM_DISTRIBUTED_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**env, "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    if case == "no MASTER_ADDR":
        monkeypatch.delenv("MASTER_PORT")
    result = CliRunner().invoke(main, ["batch", str(jobs), "--out", str(out), "--device", "cpu"])
    assert expected in one_error_line(result)
    assert not out.exists()
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "SGSIM_DISTRIBUTED_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["batch", str(jobs), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (out / "summary.csv").read_text() == "row,name,status,rank,error\n"
