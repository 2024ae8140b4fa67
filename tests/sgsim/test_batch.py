"""`sgsim batch`: every job of a CSV in the layout of `sgsim edit`, grouped by source, resumable, bad rows recorded."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile
from PIL import Image


STEPS = "3"


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


def test_bad_rows_and_failing_jobs_are_recorded_and_a_rerun_redoes_only_them(run, shared_data, tmp_path):
    audio = shared_data / "audio"
    soundfile.write(tmp_path / "silent.wav", np.zeros(44100, dtype=np.float32), 44100)
    jobs = tmp_path / "jobs.csv"
    rows = [
        {"name": "ok", "audio": "sounds/wind.wav", "text": "", "seed": "1", "latent": ""},
        {"name": "silent", "audio": "silent.wav", "text": "", "seed": "1", "latent": ""},
        {"name": "two-sources", "audio": "sounds/wind.wav", "text": "", "seed": "1", "latent": "x.npz"},
        {"name": "ok", "audio": "", "text": "a snowy mountain", "seed": "2", "latent": ""},
        {"name": "no-latent", "audio": "", "text": "fire", "seed": "", "latent": "missing.npz"},
        {"name": "text", "audio": "", "text": "fire", "seed": "2", "latent": ""},
    ]
    (tmp_path / "sounds").symlink_to(audio)  # relative paths are relative to the CSV's folder
    write_jobs(jobs, rows)
    out = tmp_path / "out"
    first = run("batch", str(jobs), "--out", str(out))
    assert first.exit_code == 1, first.output
    assert "2 done, 0 skipped (complete before), 4 failed" in first.output
    lines = summary(out)
    assert [(row["row"], row["name"], row["status"]) for row in lines] == [
        ("2", "ok", "done"), ("3", "silent", "failed"), ("4", "two-sources", "failed"), ("5", "ok", "failed"),
        ("6", "no-latent", "failed"), ("7", "text", "done")]
    errors = {row["row"]: row["error"] for row in lines}
    assert "silent" in errors["3"] and "exactly one of seed, image, latent" in errors["4"]
    assert "already used by row 2" in errors["5"] and "latent file not found" in errors["6"]
    assert all("\n" not in error for error in errors.values())
    assert sorted(p.name for p in out.iterdir()) == ["ok", "summary.csv", "text"]  # nothing half-written for the failures
    stamp = (out / "ok" / "run.json").stat().st_mtime_ns

    soundfile.write(tmp_path / "silent.wav", 0.3 * np.sin(np.arange(44100 * 2) / 10).astype(np.float32), 44100)  # fixed
    rows[2]["latent"] = ""
    write_jobs(jobs, rows)
    second = run("batch", str(jobs), "--out", str(out))
    assert second.exit_code == 1 and "2 done, 2 skipped (complete before), 2 failed" in second.output, second.output
    assert [row["status"] for row in summary(out)] == ["skipped", "done", "done", "failed", "failed", "skipped"]
    assert (out / "ok" / "run.json").stat().st_mtime_ns == stamp  # not redone

    third = run("batch", str(jobs), "--out", str(out), "--strength", "0.5")  # other settings: every job is redone
    assert "4 done, 0 skipped" in third.output, third.output
    names = {p.name for p in (out / "ok").iterdir()}
    assert "wind_s0.5.png" in names and "wind_s1.png" not in names


@pytest.mark.parametrize("content, expected", [
    (None, "jobs file not found"),
    ("audio,seed\nx.wav,1\n", "at least 'name'"),
    ("name,audio,seeds\na,x.wav,1\n", "unknown column 'seeds'"),
])
def test_a_file_that_is_not_a_jobs_csv_is_one_line_and_writes_nothing(run, tmp_path, content, expected, one_error_line):
    jobs = tmp_path / "jobs.csv"
    if content is not None:
        jobs.write_text(content)
    result = run("batch", str(jobs), "--out", str(tmp_path / "out"))
    assert expected in one_error_line(result)
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:inverting without LPIPS")
def test_an_image_job_is_inverted_as_sgsim_edit_inverts_it(run, shared_data, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photo)
    jobs = tmp_path / "jobs.csv"
    write_jobs(jobs, [{"name": "photo-fire", "audio": str(shared_data / "audio" / "fire.wav"), "image": "photo.png"}])
    options = ["--invert-steps", "2", "--refine-steps", "1", "--no-align"]
    batch = run("batch", str(jobs), "--out", str(tmp_path / "batch"), *options)
    edit = run("edit", "--audio", str(shared_data / "audio" / "fire.wav"), "--image", str(photo), "--out", str(tmp_path / "edit"), *options)
    assert batch.exit_code == 0 and edit.exit_code == 0, batch.output + edit.output
    folder = tmp_path / "batch" / "photo-fire"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "edit").iterdir())
    for name in ("input.png", "source.png", "fire_s1.png"):
        assert (folder / name).read_bytes() == (tmp_path / "edit" / name).read_bytes(), name
    record = json.loads((folder / "run.json").read_text())["source"]["inversion"]
    assert record["steps"] == 2 and record["refine_steps"] == 1 and record["align"] is False


def test_a_name_written_as_a_formula_stays_text_in_the_summary(run, shared_data, tmp_path):
    """CSV injection: a refused name such as =HYPERLINK(...) reaches summary.csv prefixed with ', so a spreadsheet shows it."""
    hostile = ['=HYPERLINK("http://127.0.0.1/x","open me")', "+1+2", "@SUM(A1)", "-2+3", "-rain"]  # the last is a valid name
    jobs = tmp_path / "jobs.csv"
    write_jobs(jobs, [*({"name": name, "audio": str(shared_data / "audio" / "wind.wav"), "seed": "1"} for name in hostile),
                      {"name": "ok", "audio": str(shared_data / "audio" / "wind.wav"), "seed": "1"}])
    out = tmp_path / "out"
    result = run("batch", str(jobs), "--out", str(out))
    assert result.exit_code == 1 and "2 done, 0 skipped (complete before), 4 failed" in result.output, result.output
    lines = summary(out)
    names = [row["name"] for row in lines]
    assert names == ["'" + name for name in hostile] + ["ok"]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in lines for cell in row.values())
    assert sorted(p.name for p in out.iterdir()) == ["-rain", "ok", "summary.csv"]


@pytest.mark.parametrize("outputs, complete", [
    (["source.png"], True),
    ("[" * 100000 + "]" * 100000, False),  # the whole record nested 100000 lists deep
    (5, False),
    ([5], False),
    (["/etc/hostname"], False),  # a record naming a file outside its folder proves nothing about the job
    (["../other/source.png"], False),
    ([], False),
])
def test_a_run_record_read_back_is_data_never_trusted_about_other_files(tmp_path, outputs, complete):
    from sgsim.jobs import Job, is_complete

    job, settings = Job(row=2, name="rain", audio="rain.wav", seed=1), {"steps": 3}
    folder = tmp_path / "rain"
    folder.mkdir()
    (folder / "source.png").write_bytes(b"png")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "source.png").write_bytes(b"png")
    record = outputs if isinstance(outputs, str) else json.dumps({"command": "batch", "job": job.record(), "batch_settings": settings,
                                                                   "outputs": outputs})
    (folder / "run.json").write_text(record)
    assert is_complete(folder, job, settings) is complete


def test_with_steps_auto_each_job_records_the_steps_its_own_row_ran(run, shared_data, tmp_path):
    audio = shared_data / "audio"
    jobs = tmp_path / "jobs.csv"
    write_jobs(jobs, [{"name": "rain3", "audio": str(audio / "raining.wav"), "seed": "3"},
                      {"name": "fire3", "audio": str(audio / "fire.wav"), "seed": "3"}])
    batch = run("batch", str(jobs), "--out", str(tmp_path / "batch"), "--steps", "auto")
    assert batch.exit_code == 0, batch.output
    edit = run("edit", "--audio", str(audio / "raining.wav"), "--audio", str(audio / "fire.wav"), "--seed", "3",
               "--steps", "auto", "--out", str(tmp_path / "edit"))
    assert edit.exit_code == 0, edit.output
    both = json.loads((tmp_path / "edit" / "run.json").read_text())["settings"]["steps_used"]
    edited = np.load(tmp_path / "edit" / "latents.npz")["edited"]
    for row, name in enumerate(("rain3", "fire3")):
        settings = json.loads((tmp_path / "batch" / name / "run.json").read_text())["settings"]
        assert settings["steps"] == "auto" and settings["steps_used"] == [both[row]]
        np.testing.assert_allclose(np.load(tmp_path / "batch" / name / "latents.npz")["edited"], edited[row:row + 1], atol=1e-5)
