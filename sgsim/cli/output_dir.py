"""All-or-nothing output folders: a run writes into a hidden staging folder and moves it into place at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is private (0700); the result is an ordinary folder
        yield staging
        if not out.exists():
            os.rename(staging, out)
            return
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
