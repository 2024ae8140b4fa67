"""Atomic outputs get the ordinary file mode, leave nothing behind on failure, and replace whole folders only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sgsim.atomic import atomic_output, current_umask, staged_output_dir
from sgsim.errors import SgsimError


def test_written_file_has_the_umask_mode_not_a_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "a.bin") as stream:
            stream.write(b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "a.bin") as stream:
            stream.write(b"half")
            raise RuntimeError("interrupted")
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def _is_run(folder) -> bool:
    return (folder / "run.json").is_file()


def test_staged_output_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with staged_output_dir(out) as staging:
            (staging / "a.png").write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with staged_output_dir(out) as staging:
        (staging / "a.png").write_bytes(b"first")
        (staging / "run.json").write_bytes(b"{}")
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()


def test_a_rerun_replaces_the_whole_folder_never_a_mix(tmp_path):
    out = tmp_path / "run"
    with staged_output_dir(out, replaceable=_is_run) as staging:
        (staging / "a.png").write_bytes(b"first")
        (staging / "run.json").write_bytes(b"1")
    with pytest.raises(KeyboardInterrupt):
        with staged_output_dir(out, replaceable=_is_run) as staging:
            (staging / "b.png").write_bytes(b"second")
            raise KeyboardInterrupt  # Ctrl-C while writing: the first run stays whole
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.png": b"first", "run.json": b"1"}
    with staged_output_dir(out, replaceable=_is_run) as staging:
        (staging / "b.png").write_bytes(b"second")
        (staging / "run.json").write_bytes(b"2")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"b.png": b"second", "run.json": b"2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_foreign_folder_or_a_file_is_refused_before_the_work_unless_overwrite(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "source.png").write_bytes(b"mine")
    with pytest.raises(SgsimError, match="photos is not empty and holds files sgsim did not write.*--overwrite"):
        with staged_output_dir(out, replaceable=_is_run):
            pytest.fail("the body must not run")
    assert [p.name for p in out.iterdir()] == ["source.png"] and sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
    with staged_output_dir(out, overwrite=True) as staging:
        (staging / "x.png").write_bytes(b"new")
    assert [p.name for p in out.iterdir()] == ["x.png"]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(SgsimError, match="is a file"):
        with staged_output_dir(tmp_path / "file"):
            pytest.fail("the body must not run")


def test_an_unwritable_parent_is_found_before_the_work(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("running as root: permissions do not bind")
        with pytest.raises(SgsimError, match="cannot write the output folder .*ro/out.*writable --out"):
            with staged_output_dir(parent / "out"):
                pytest.fail("the body must not run")
    finally:
        parent.chmod(0o755)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="no sysfs")
def test_a_folder_the_kernel_owns_is_found_before_the_work():
    with pytest.raises(SgsimError, match="cannot write the output folder /sys/sgsim-out"):
        with staged_output_dir("/sys/sgsim-out"):
            pytest.fail("the body must not run")


def test_staging_left_by_a_killed_run_is_cleaned_but_a_live_one_is_kept(tmp_path):
    out = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f".run.partial-{dead.stdout.strip()}-abc123"
    live = tmp_path / f".run.partial-{os.getpid()}-def456"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "a.png").write_bytes(b"half")
    (tmp_path / ".other.partial-1-x").mkdir()  # another output's staging is not ours to judge
    with staged_output_dir(out) as staging:
        (staging / "a.png").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-1-x", live.name, "run"]
