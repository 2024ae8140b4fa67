"""Atomic output: readers never see a half-written image, latent, report or output folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing; on success it replaces `path` in one step.

    The temporary file lives in the same folder so `os.replace` is a rename on one file system;
    if the body raises, the temporary file is removed and `path` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(temp_name, 0o666 & ~current_umask())  # mkstemp's file is private (0600); the result is an ordinary file
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


@contextlib.contextmanager
def staged_output_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh staging folder beside `out`; on success its files land in `out`, on any failure it vanishes.

    A new `out` is the staging folder renamed in one step; into an existing `out` each file is moved
    with os.replace (same file system, so each move is atomic), replacing files of the same name.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's folder is private (0700); the result is an ordinary folder
        yield staging
        if not out.exists():
            os.rename(staging, out)
            return
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
