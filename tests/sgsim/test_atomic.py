"""Atomic outputs get the ordinary file mode and leave nothing behind on failure."""

from __future__ import annotations

import os

import pytest

from sgsim.atomic import atomic_output


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
