"""Jobs of `sgsim batch`: a CSV of edits read into checked jobs, grouped by shared source, each job's slice of a
group's edit, whether a job's folder is already complete, and the summary of a run.

CSV format (a header row, then one row per job; empty cells are absent; relative paths are relative to the CSV):
  name      folder name of the job under --out (letters, digits, . _ -), unique
  audio     sound to edit toward             } at least one of the two
  text      text to edit toward / mix in     }
  seed | image | latent                      exactly one source (latent: FILE[:KEY], as `sgsim edit --latent`)
  strength  comma-separated strengths (default: --strength)
  class     class of a seed source (conditional generators only)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Optional

from sgsim.atomic import atomic_output
from sgsim.cli.options import SEED_MAX
from sgsim.errors import SgsimError

COLUMNS = ("name", "audio", "text", "seed", "image", "latent", "strength", "class")
SOURCE_COLUMNS = ("seed", "image", "latent")
SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("row", "name", "status", "rank", "error")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula (OWASP, CSV injection)
DONE, SKIPPED, FAILED = "done", "skipped", "failed"  # skipped: its folder was complete from an earlier run
NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class Job:
    """One row of the jobs CSV, checked for form (the files are checked when the job runs)."""

    row: int  # line of the CSV (the header is line 1)
    name: str
    audio: Optional[str] = None  # path, resolved against the CSV's folder
    text: Optional[str] = None
    seed: Optional[int] = None
    image: Optional[str] = None
    latent: Optional[str] = None  # FILE[:KEY]
    strengths: tuple[float, ...] = (1.0,)
    class_index: Optional[int] = None

    def source_key(self) -> tuple:
        """Jobs with equal keys start from the same latent and are optimised together."""
        return (self.seed, self.class_index, self.image, self.latent)

    def record(self) -> dict:
        """The job as run.json stores it (JSON types only): a rerun skips the job only if this is unchanged."""
        return {**asdict(self), "strengths": list(self.strengths)}


@dataclass
class Outcome:
    """What became of one job."""

    row: int
    name: str
    status: str  # DONE, SKIPPED or FAILED
    rank: int = 0  # the rank that ran it (0 for rows refused while reading)
    error: str = ""  # one line, for FAILED


def one_line(error: BaseException) -> str:
    """An error as one summary line: its message (with the type for unexpected errors) and no newlines."""
    from sgsim.errors import user_errors

    text = str(error) if isinstance(error, user_errors()) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


def _resolve(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _number(column: str, value: str, kind: type, low: int, high: Optional[int] = None):
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise SgsimError(f"{column} {value!r} is not a whole number {bounds}")
    return number


def _strengths(value: str) -> tuple[float, ...]:
    import math

    try:
        strengths = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise SgsimError(f"strength {value!r} is not a comma-separated list of numbers such as 0.5,1,1.5") from None
    if not all(math.isfinite(s) for s in strengths):
        raise SgsimError(f"strength {value!r}: strengths must be finite numbers")
    return strengths


def parse_row(cells: dict[str, str], line: int, base: Path, default_strengths: Iterable[float], mix: str) -> Job:
    """A job from one CSV row (cells stripped, '' = absent); SgsimError saying what to fix in that row."""
    name = cells.get("name", "")
    if not name or not set(name) <= NAME_CHARACTERS or name.startswith("."):
        raise SgsimError(f"name {name!r} is not a folder name: use letters, digits, '.', '_' and '-', not starting with '.'")
    sources = [column for column in SOURCE_COLUMNS if cells.get(column)]
    if len(sources) != 1:
        raise SgsimError(f"give exactly one of seed, image, latent; got {len(sources)} ({', '.join(sources) or 'none'})")
    if not cells.get("audio") and not cells.get("text"):
        raise SgsimError("give an audio file, a text or both")
    if mix == "layers" and not (cells.get("audio") and cells.get("text")):
        raise SgsimError("--mix layers needs both audio and text in every row")
    if cells.get("class") and not cells.get("seed"):
        raise SgsimError("class picks the label of a seed source; a latent or an image has none, leave class empty")
    return Job(
        row=line, name=name,
        audio=_resolve(base, cells["audio"]) if cells.get("audio") else None,
        text=cells.get("text") or None,
        seed=_number("seed", cells["seed"], int, 0, SEED_MAX) if cells.get("seed") else None,
        image=_resolve(base, cells["image"]) if cells.get("image") else None,
        latent=_resolve(base, cells["latent"]) if cells.get("latent") else None,
        strengths=_strengths(cells["strength"]) if cells.get("strength") else tuple(float(s) for s in default_strengths),
        class_index=_number("class", cells["class"], int, 0) if cells.get("class") else None,
    )


def read_jobs(path: Path, default_strengths: Iterable[float] = (1.0,), mix: str = "weighted") -> tuple[list[Job], list[Outcome]]:
    """The jobs of a CSV and an Outcome (FAILED, with the reason) for every row that is not a job.

    A file that is not a jobs CSV at all (missing, no header, no name column, an unknown column) is one SgsimError.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SgsimError(f"jobs file not found: {path}; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SgsimError(f"{path} cannot be read as a UTF-8 CSV ({error}); save it as UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [column.strip() for column in reader.fieldnames or []]
    if "name" not in header:
        raise SgsimError(f"{path}: the first line must be a header naming the columns, with at least 'name'; "
                         f"columns: {', '.join(COLUMNS)}")
    unknown = [column for column in header if column not in COLUMNS]
    if unknown:
        raise SgsimError(f"{path}: unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    jobs, refused, rows_of = [], [], {}
    default_strengths = tuple(default_strengths)
    for number, row in enumerate(reader, start=2):
        if None in row:
            refused.append(Outcome(number, (row.get("name") or "").strip(), FAILED, error=f"row {number} has more cells than the header has columns"))
            continue
        cells = {key.strip(): (value or "").strip() for key, value in row.items()}
        if not any(cells.values()):
            continue  # a blank line
        try:
            job = parse_row(cells, number, path.parent, default_strengths, mix)
            if job.name in rows_of:
                raise SgsimError(f"name {job.name!r} is already used by row {rows_of[job.name]}; give each job its own name")
        except SgsimError as error:
            refused.append(Outcome(number, cells.get("name", ""), FAILED, error=f"row {number}: {error}"))
            continue
        rows_of[job.name] = number
        jobs.append(job)
    return jobs, refused


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs sharing a source (seed and class, image or latent), in the order of their first row."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.source_key(), []).append(job)
    return list(groups.values())


def union_strengths(jobs: Iterable[Job]) -> list[float]:
    """Every strength any of the jobs asks for, in first-seen order: one sweep of a group's edit serves them all."""
    return list(dict.fromkeys(s for job in jobs for s in job.strengths))


def job_result(result, index: int, job: Job, swept: list[float], mix: str):
    """The EditResult of target `index` of a group's edit, with only `job`'s strengths out of the `swept` ones: what an
    edit of that job alone returns (sgsim.editing edits a batch of targets as it edits each alone)."""
    count = len(result.targets)
    columns = [swept.index(s) for s in job.strengths]
    guides = [index, count + index] if mix == "layers" else [index]
    settings = dict(result.settings)
    settings["strengths"] = list(job.strengths)
    for key in ("loudness_dbfs", "loudness_scale"):
        settings[key] = [settings[key][index]]
    return replace(
        result,
        images=result.images[index:index + 1][:, columns],
        latents=result.latents[index:index + 1][:, columns],
        edited_latents=result.edited_latents[index:index + 1],
        strengths=result.strengths[index:index + 1][:, columns],
        losses={name: values[:, guides] for name, values in result.losses.items()},
        guides=[result.guides[g] for g in guides],
        targets=[result.targets[index]],
        settings=settings,
        frames=[frame[guides] for frame in result.frames],
    )


def is_complete(folder: Path, job: Job, settings: dict) -> bool:
    """True when `folder` holds a finished `sgsim batch` output of this very job and settings (its run.json says so and
    every file it lists is there); anything else is redone."""
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: lists nested thousands deep
        return False
    if not (isinstance(record, dict) and record.get("command") == "batch" and record.get("job") == job.record()
            and record.get("batch_settings") == settings):
        return False
    outputs = record.get("outputs")  # names the record gives of other files: only plain names inside the folder count
    return (isinstance(outputs, list) and bool(outputs)
            and all(isinstance(name, str) and _stays_inside(name) and (folder / name).is_file() for name in outputs))


def _stays_inside(name: str) -> bool:
    """True when `name` is a relative path that stays inside the folder it is joined to (not absolute, no '..')."""
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts


def spreadsheet_text(text: str) -> str:
    """A text cell that a spreadsheet shows as text: a leading formula character gets a ' before it, as OWASP advises."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_summary(path: Path, outcomes: Iterable[Outcome]) -> None:
    """summary.csv: one line per row of the jobs file, in row order, with its status and one-line error; atomic."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for outcome in sorted(outcomes, key=lambda o: o.row):
        writer.writerow([outcome.row, spreadsheet_text(outcome.name), outcome.status, outcome.rank, spreadsheet_text(outcome.error)])
    with atomic_output(path) as stream:
        stream.write(buffer.getvalue().encode("utf-8"))
