"""Atomic output: readers never see a half-written image, latent, report or output folder."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from sgsim.errors import SgsimError

STAGING_KIND = "partial"  # .<out>.partial-<pid>-XXXX: a run still writing, or killed while writing
REPLACED_KIND = "replaced"  # .<out>.replaced-<pid>-XXXX: an earlier output on its way out


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_staging(out: Path) -> list[Path]:
    """Remove the hidden staging folders beside `out` that a killed run left (their writer's process is gone);
    a replaced earlier output only once `out` itself is back. Returns what was removed."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for candidate in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, rest = candidate.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind == STAGING_KIND and pid.isdigit() and _pid_alive(int(pid)):
            continue
        if kind == REPLACED_KIND and not out.exists():
            continue  # the run was killed between its two renames: this is the only copy of the earlier output
        if kind in (STAGING_KIND, REPLACED_KIND) and candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def check_output_dir(out: str | os.PathLike, overwrite: bool = False,
                     replaceable: Callable[[Path], bool] = lambda folder: False) -> Path:
    """Refuse, before any work, an `out` that is a file, or a non-empty folder that `replaceable` does not
    recognise (an earlier output of the same tool) unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SgsimError(f"output folder {out} is a file; pass a folder path with --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not replaceable(out):
        raise SgsimError(f"output folder {out} is not empty and holds files sgsim did not write; "
                         f"pass another --out, or --overwrite to replace the whole folder")
    return out


def _new_staging(path: Path, cannot_write: str) -> Path:
    """A fresh hidden staging folder beside `path` (.<name>.partial-<pid>-XXXX), after removing those of killed runs;
    an unwritable place is an SgsimError 'cannot write ' + `cannot_write` (formatted with path and reason)."""
    clean_stale_staging(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{STAGING_KIND}-{os.getpid()}-"))
    except OSError as exc:
        raise SgsimError("cannot write " + cannot_write.format(path=path, reason=exc.strerror or exc)) from None


@contextlib.contextmanager
def staged_output_dir(out: str | os.PathLike, overwrite: bool = False,
                      replaceable: Callable[[Path], bool] = lambda folder: False) -> Iterator[Path]:
    """Yield a fresh staging folder beside `out`; on success it becomes `out` whole, on any failure it vanishes.

    Checked on entry, before the caller works: `out` must be creatable and writable and, if it is a non-empty
    folder, `replaceable` or `overwrite` (check_output_dir). An existing `out` is replaced as a whole folder
    (two renames on one file system), never merged: readers see the old run or the new one, not a mix.
    Staging folders of killed runs (.<out>.partial-<pid>-*) are removed on the way in.
    """
    out = check_output_dir(out, overwrite, replaceable)
    staging = _new_staging(out, "the output folder {path} ({reason}); pass a writable --out")
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's folder is private (0700); the result is an ordinary folder
        yield staging
        check_output_dir(out, overwrite, replaceable)  # something may have appeared there while the caller worked
        if out.exists():
            replaced = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{REPLACED_KIND}-{os.getpid()}-"))
            os.rename(out, replaced / out.name)
            os.rename(staging, out)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_output_files(paths: list[Path]) -> Iterator[list[Path]]:
    """Yield staging paths for files that belong together (a video and its record), all in one hidden folder beside
    `paths[0]` (.<name>.partial-<pid>-XXXX, which clean_stale_staging removes after a kill). On success each file
    replaces its path by a rename, `paths[0]` last, so its presence means the others are whole; on any failure
    nothing appears and the staging folder vanishes."""
    first = Path(paths[0])
    if len({Path(path).parent.resolve() for path in paths}) != 1:
        raise SgsimError(f"files staged together must share a folder, got {[str(path) for path in paths]}")
    staging = _new_staging(first, "{path} ({reason}); pass a writable output path")
    try:
        staged = [staging / Path(path).name for path in paths]
        yield staged
        for source, target in [*zip(staged[1:], paths[1:]), (staged[0], first)]:
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
