"""Jobs of `sgsim batch`: a CSV of edits read into checked jobs, grouped by shared source, run with one Editor per
process (split over the processes of torchrun when started under it), each job's slice of a group's edit written as
`sgsim edit` writes one, whether a job's folder is already complete, and the summary of a run.

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
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from sgsim.errors import SgsimError
from sgsim.settings import SEED_MAX, VIDEO_FRAMES, EditSettings, settings_record

COLUMNS = ("name", "audio", "text", "seed", "image", "latent", "strength", "class")
SOURCE_COLUMNS = ("seed", "image", "latent")
SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("row", "name", "status", "rank", "error")
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

    def settings(self, shared: EditSettings) -> EditSettings:
        """This job's edit settings: those every job shares, with the row's strengths."""
        return shared.updated(strengths=self.strengths)


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
    from sgsim.settings import parse_strengths

    try:
        return tuple(parse_strengths(value))
    except SgsimError as error:
        raise SgsimError(f"strength {error}") from None


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
    settings["steps_used"] = [settings["steps_used"][g] for g in guides]  # steps auto: each row stops as it would alone
    ran = max(settings["steps_used"])
    return replace(
        result,
        images=result.images[index:index + 1][:, columns],
        latents=result.latents[index:index + 1][:, columns],
        edited_latents=result.edited_latents[index:index + 1],
        strengths=result.strengths[index:index + 1][:, columns],
        losses={name: values[:ran, guides] for name, values in result.losses.items()},
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


def write_summary(path: Path, outcomes: Iterable[Outcome]) -> None:
    """summary.csv: one line per row of the jobs file, in row order, with its status and one-line error; atomic."""
    from sgsim.outputs import write_csv

    write_csv(path, [dict(zip(SUMMARY_COLUMNS, (o.row, o.name, o.status, o.rank, o.error)))
                     for o in sorted(outcomes, key=lambda o: o.row)], SUMMARY_COLUMNS)


def _print(message: str, error: bool = False) -> None:
    print(message, file=sys.stderr if error else sys.stdout, flush=True)


# echo(message, error): how the runner reports each job's outcome (the command line passes click.echo's)
Echo = Callable[[str, bool], None]


class JobRunner:
    """Runs this rank's groups of jobs with one Editor (loaded at the first job that needs it) and records each job."""

    def __init__(self, out: Path, overwrite: bool, settings: EditSettings, device: Optional[str], rank, argv: Sequence[str] = (),
                 echo: Echo = _print):
        self.out, self.overwrite, self.settings, self.device_name, self.rank = out, overwrite, settings, device, rank
        # What decides a job's result (not where it runs, nor the row's own strengths): a rerun with other settings redoes it.
        self.batch_settings = settings_record(settings, leave_out=("strengths",))
        self.argv, self.echo = list(argv), echo
        self.editor = None
        self.loaded_s = 0.0
        self.weights: dict[tuple, dict] = {}  # weight files -> their run.json record, hashed once per run

    def _outcome(self, job: Job, status: str, error: str = "") -> Outcome:
        prefix = f"[rank {self.rank.rank}] " if self.rank.distributed else ""
        self.echo(f"{prefix}{job.name}: {status}{' - ' + error if error else ''}", status == FAILED)
        return Outcome(job.row, job.name, status, self.rank.rank, error)

    def _plan(self, job: Job):
        """Every check `sgsim edit` makes before the networks load, on this job's inputs and folder."""
        from sgsim.atomic import check_output_dir
        from sgsim.editing.plan import plan_edit
        from sgsim.outputs import is_run_folder

        plan = plan_edit((Path(job.audio),) if job.audio else (), job.text, Path(job.image) if job.image else None, job.seed, job.latent,
                         job.class_index, job.settings(self.settings), str(self.device), self.out / job.name)
        check_output_dir(plan.out, self.overwrite, is_run_folder)
        return plan

    @property
    def device(self):
        from sgsim.distributed import rank_device

        return rank_device(self.rank, self.device_name)

    def _editor(self):
        if self.editor is None:
            from sgsim.editing import Editor

            s, started = self.settings, time.perf_counter()
            self.editor = Editor.from_pretrained(s.generator, s.encoder, encoder_checkpoint=s.encoder_checkpoint, clip=s.clip_weights,
                                                 device=self.device, preset=s.preset)
            self.loaded_s = time.perf_counter() - started
        return self.editor

    def _edit(self, ready: list) -> tuple[list, object]:
        """One optimisation for jobs sharing a source (an image inverted first, as `sgsim edit` inverts it); returns each
        job's own result, and the inverted photo with its inversion's record (both None for other sources)."""
        from sgsim.editing import Target
        from sgsim.editing.plan import inverted_source
        from sgsim.editing.stopping import step_cap

        settings, editor, plan = self.settings, self._editor(), ready[0][1]
        jobs = [job for job, _ in ready]
        source, photo, inversion = inverted_source(editor, plan, settings)
        swept = union_strengths(jobs)
        result = editor.edit(
            source, [Target(audio=job.audio, text=job.text) for job in jobs], settings.updated(strengths=swept),
            record_every=max(1, step_cap(settings.steps) // VIDEO_FRAMES) if settings.save_video else 0,
            class_index=jobs[0].class_index,
        )
        return [job_result(result, index, job, swept, settings.mix) for index, job in enumerate(jobs)], (photo, inversion)

    def _weights_record(self) -> dict:
        """run.json's weights record of the networks loaded so far (helper networks load on first use)."""
        from sgsim.outputs import weights_record

        files = tuple(sorted((name, str(path)) for name, path in self.editor.weight_files.items()))
        if files not in self.weights:
            self.weights[files] = weights_record(self.editor.weight_files)
        return self.weights[files]

    def _write(self, job: Job, plan, result, inverted: tuple, edit_s: float) -> None:
        from sgsim.atomic import staged_output_dir
        from sgsim.editing.folder import write_edit_folder
        from sgsim.editing.plan import source_record
        from sgsim.outputs import edit_run_record, is_run_folder

        settings = job.settings(self.settings)
        with staged_output_dir(plan.out, self.overwrite, is_run_folder) as staging:
            if inverted[0] is not None:
                result.input_image = inverted[0][0]  # inverted here, as `sgsim edit` does: the folder shows the photo beside its reconstruction
            resolved = dict(result.settings)
            resolved.pop("seed", None)  # the Editor's seed seeds only an image source's inversion, done here (INVERSION_SEED)
            write_edit_folder(staging, result, video=settings.save_video, run=edit_run_record(
                "batch", self.argv, settings, resolved,
                source=source_record(plan, inverted[1]),
                targets=[{"audio": job.audio, "text": job.text}],
                weights=self._weights_record(),
                timings_s={"load": self.loaded_s, "edit": edit_s},
                job=job.record(), batch_settings=self.batch_settings,
            ))

    def run_group(self, group: list[Job]) -> list[Outcome]:
        """Skip the complete jobs, refuse the bad ones, edit the rest together (each alone if that fails), write each."""
        from sgsim.errors import user_errors

        outcomes, ready = [], []
        for job in group:
            if is_complete(self.out / job.name, job, self.batch_settings):
                outcomes.append(self._outcome(job, SKIPPED))
                continue
            try:
                ready.append((job, self._plan(job)))
            except user_errors() as error:
                outcomes.append(self._outcome(job, FAILED, one_line(error)))
        if not ready:
            return outcomes
        self._editor()  # networks that cannot load stop the run with one line: no job could succeed
        started = time.perf_counter()
        try:
            results, inverted = self._edit(ready)
        except Exception as error:  # any failure of a job is recorded and the others go on
            if len(ready) > 1:  # find which job it was: each alone
                return outcomes + [outcome for item in ready for outcome in self.run_group([item[0]])]
            return outcomes + [self._outcome(ready[0][0], FAILED, one_line(error))]
        edit_s = (time.perf_counter() - started) / len(ready)
        for (job, plan), result in zip(ready, results):
            try:
                self._write(job, plan, result, inverted, edit_s)
            except Exception as error:  # as above: recorded, the others go on
                outcomes.append(self._outcome(job, FAILED, one_line(error)))
            else:
                outcomes.append(self._outcome(job, DONE))
        return outcomes


def run_jobs(jobs_file: Path, out: Path, overwrite: bool, settings: EditSettings, device: Optional[str] = None,
             argv: Sequence[str] = (), echo: Echo = _print) -> int:
    """Run every job of `jobs_file` into OUT/<name>/ and write OUT/summary.csv; under torchrun the jobs are split over
    the processes, each on its own device. `settings` are the edit settings every job shares (its strengths: those
    of a row without any). Returns the exit code: 1 unless every job succeeded."""
    from sgsim.distributed import current_rank, gather_objects, process_group, rank_device, shard

    jobs, refused = read_jobs(jobs_file, settings.strengths, settings.mix)
    if out.exists() and not out.is_dir():
        raise SgsimError(f"--out {out} is a file; pass a folder for the job folders")
    rank = current_rank()
    rank_device(rank, device)  # a bad --device fails before any work
    with process_group() as rank:  # gloo: the ranks exchange only their outcomes, on the CPU
        groups = group_jobs(jobs)
        runner = JobRunner(out, overwrite, settings, device, rank, argv, echo)
        mine = [outcome for group in shard(groups, rank, [len(group) for group in groups]) for outcome in runner.run_group(group)]
        outcomes = refused + [outcome for part in gather_objects(mine) for outcome in part]
        if rank.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_summary(out / SUMMARY_FILE, outcomes)
            counts = {status: sum(o.status == status for o in outcomes) for status in (DONE, SKIPPED, FAILED)}
            echo(f"{counts[DONE]} done, {counts[SKIPPED]} skipped (complete before), {counts[FAILED]} failed; "
                 f"see {out / SUMMARY_FILE}", False)
    return 1 if any(outcome.status == FAILED for outcome in outcomes) else 0
