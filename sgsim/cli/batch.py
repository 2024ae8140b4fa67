"""`sgsim batch`: many edits from a CSV of jobs, each written as `sgsim edit` writes one; resumable, and split over
the processes of `torchrun --nproc_per_node N` (one device each) when started under it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from sgsim.cli.edit import INVERSION_SEED, edit_settings, plan_edit
from sgsim.cli.options import command_line


def _message(error: BaseException) -> str:
    from sgsim.batch import one_line

    return " ".join(error.format_message().split()) if isinstance(error, click.ClickException) else one_line(error)


class _Runner:
    """Runs this rank's groups of jobs with one Editor (loaded at the first job that needs it) and records each job."""

    def __init__(self, out: Path, overwrite: bool, options: dict, settings: dict, rank):
        self.out, self.overwrite, self.options, self.settings, self.rank = out, overwrite, options, settings, rank
        self.editor = None
        self.loaded_s = 0.0
        self.weights: dict[tuple, dict] = {}  # weight files -> their run.json record, hashed once per run

    def _outcome(self, job, status: str, error: str = ""):
        from sgsim.batch import Outcome

        prefix = f"[rank {self.rank.rank}] " if self.rank.distributed else ""
        click.echo(f"{prefix}{job.name}: {status}{' - ' + error if error else ''}", err=status == "failed")
        return Outcome(job.row, job.name, status, self.rank.rank, error)

    def _plan(self, job):
        """Every check `sgsim edit` makes before the networks load, on this job's inputs and folder."""
        from sgsim.atomic import check_output_dir
        from sgsim.outputs import is_run_folder

        o = self.options
        plan = plan_edit((Path(job.audio),) if job.audio else (), job.text, Path(job.image) if job.image else None, job.seed, job.latent,
                         job.class_index, o["mix"], o["precision"], str(self.device), self.out / job.name, o["preset"], o["generator"], o["align"])
        check_output_dir(plan.out, self.overwrite, is_run_folder)
        return plan

    @property
    def device(self):
        from sgsim.distributed import rank_device

        return rank_device(self.rank, self.options["device"])

    def _editor(self):
        if self.editor is None:
            from sgsim.editing import Editor

            o, started = self.options, time.perf_counter()
            self.editor = Editor.from_pretrained(o["generator"], o["encoder"], encoder_checkpoint=o["encoder_checkpoint"], clip=o["clip_weights"],
                                                 device=self.device, preset=o["preset"])
            self.loaded_s = time.perf_counter() - started
        return self.editor

    def _edit(self, ready: list) -> tuple[list, object]:
        """One optimisation for jobs sharing a source (an image inverted first, as `sgsim edit` inverts it); returns each
        job's own result and the inverted photo (None for other sources)."""
        from sgsim.batch import job_result, union_strengths
        from sgsim.cli.edit import VIDEO_FRAMES
        from sgsim.cli.invert import invert_photo
        from sgsim.editing import Target
        from sgsim.editing.sources import ImageSource, LatentSource

        o, editor, plan = self.options, self._editor(), ready[0][1]
        jobs = [job for job, _ in ready]
        source, photo = plan.source, None
        if isinstance(source, ImageSource):
            photo, inversion, lpips_file = invert_photo(editor.generator, source.image, plan.align, o["invert_steps"], o["refine_steps"],
                                                        INVERSION_SEED)
            source = LatentSource(inversion.w_plus[0], inversion.noise)
            if lpips_file is not None:
                editor.weight_files.setdefault("lpips", lpips_file)
        swept = union_strengths(jobs)
        result = editor.edit(
            source, [Target(audio=job.audio, text=job.text) for job in jobs], steps=o["steps"], lr=o["lr"],
            lambda_latent=o["lambda_latent"], lambda_id=o["lambda_id"], weights=o["loss_weights"], mix=o["mix"], strengths=swept,
            loudness_strength=o["loudness_strength"], record_every=max(1, o["steps"] // VIDEO_FRAMES) if o["save_video"] else 0,
            precision=o["precision"], class_index=jobs[0].class_index,
        )
        return [job_result(result, index, job, swept, o["mix"]) for index, job in enumerate(jobs)], photo

    def _weights_record(self) -> dict:
        """run.json's weights record of the networks loaded so far (helper networks load on first use)."""
        from sgsim.outputs import weights_record

        files = tuple(sorted((name, str(path)) for name, path in self.editor.weight_files.items()))
        if files not in self.weights:
            self.weights[files] = weights_record(self.editor.weight_files)
        return self.weights[files]

    def _write(self, job, plan, result, photo, edit_s: float) -> None:
        from sgsim.atomic import staged_output_dir
        from sgsim.editing.folder import write_edit_folder
        from sgsim.outputs import is_run_folder, run_record

        o = self.options
        with staged_output_dir(plan.out, self.overwrite, is_run_folder) as staging:
            image = job.image is not None
            if photo is not None:
                result.input_image = photo[0]  # inverted here, as `sgsim edit` does: the folder shows the photo beside its reconstruction
            settings = dict(result.settings)
            settings.pop("seed", None)  # the Editor's seed seeds only an image source's inversion, done here (INVERSION_SEED)
            write_edit_folder(staging, result, video=o["save_video"], run=run_record(
                "batch", command_line(),
                source={"seed": job.seed, "image": job.image, "latent": job.latent, "latent_key": plan.latent_key,
                        "class": job.class_index, "invert_steps": o["invert_steps"] if image else None,
                        "refine_steps": o["refine_steps"] if image else None, "align": plan.align,
                        "inversion_seed": INVERSION_SEED if image else None},
                targets=[{"audio": job.audio, "text": job.text}],
                generator=o["generator"], encoder=o["encoder"], encoder_checkpoint=o["encoder_checkpoint"], clip=o["clip_weights"],
                settings=settings, weights=self._weights_record(),
                timings_s={"load": self.loaded_s, "edit": edit_s},
                job=job.record(), batch_settings=self.settings,
            ))

    def run_group(self, group: list) -> list:
        """Skip the complete jobs, refuse the bad ones, edit the rest together (each alone if that fails), write each."""
        from sgsim.batch import is_complete
        from sgsim.errors import user_errors

        outcomes, ready = [], []
        for job in group:
            if is_complete(self.out / job.name, job, self.settings):
                outcomes.append(self._outcome(job, "skipped"))
                continue
            try:
                ready.append((job, self._plan(job)))
            except (click.ClickException, *user_errors()) as error:
                outcomes.append(self._outcome(job, "failed", _message(error)))
        if not ready:
            return outcomes
        self._editor()  # networks that cannot load stop the run with one line: no job could succeed
        started = time.perf_counter()
        try:
            results, photo = self._edit(ready)
        except Exception as error:  # any failure of a job is recorded and the others go on
            if len(ready) > 1:  # find which job it was: each alone
                return outcomes + [outcome for item in ready for outcome in self.run_group([item[0]])]
            return outcomes + [self._outcome(ready[0][0], "failed", _message(error))]
        edit_s = (time.perf_counter() - started) / len(ready)
        for (job, plan), result in zip(ready, results):
            try:
                self._write(job, plan, result, photo, edit_s)
            except Exception as error:  # as above: recorded, the others go on
                outcomes.append(self._outcome(job, "failed", _message(error)))
            else:
                outcomes.append(self._outcome(job, "done"))
        return outcomes


@click.command("batch")
@click.argument("jobs_file", metavar="JOBS.csv", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder of the job folders (OUT/<name>/, as `sgsim edit` writes) and summary.csv.")
@click.option("--overwrite", is_flag=True, help="Replace a job's folder even if it holds files sgsim did not write.")
@edit_settings
def batch_command(jobs_file, out, overwrite, invert_steps, refine_steps, align, generator, encoder, encoder_checkpoint, clip_weights, preset, steps, lr,
                  lambda_latent, lambda_id, loss_weights, strengths, mix, loudness_strength, device, save_video, precision) -> int:
    """Run the edits of a CSV of jobs, one folder each; resumable, and split over the processes of torchrun.

    JOBS.csv has a header and one row per job: name, audio and/or text, exactly one of seed / image / latent, and
    optionally strength and class (relative paths are relative to the CSV). Jobs sharing a source are optimised
    together. A job whose folder is complete is skipped; a bad row or a failing job is recorded in OUT/summary.csv
    without stopping the others; the exit code is 1 unless every job succeeded. Under `torchrun --nproc_per_node N`
    the jobs are split over the N processes, each on its own device.
    """
    from sgsim.batch import SUMMARY_FILE, group_jobs, read_jobs, write_summary
    from sgsim.distributed import current_rank, gather_objects, process_group, rank_device, shard
    from sgsim.errors import SgsimError

    jobs, refused = read_jobs(jobs_file, strengths, mix)
    if out.exists() and not out.is_dir():
        raise SgsimError(f"--out {out} is a file; pass a folder for the job folders")
    rank = current_rank()
    rank_device(rank, device)  # a bad --device fails before any work
    options = {"invert_steps": invert_steps, "refine_steps": refine_steps, "align": align, "generator": generator, "encoder": encoder, "encoder_checkpoint": encoder_checkpoint,
               "clip_weights": clip_weights, "preset": preset, "steps": steps, "lr": lr, "lambda_latent": lambda_latent,
               "lambda_id": lambda_id, "loss_weights": loss_weights, "mix": mix, "loudness_strength": loudness_strength, "device": device,
               "save_video": save_video, "precision": precision}
    # What decides a job's result (not where it runs): a rerun with other settings redoes the job.
    settings = json.loads(json.dumps({k: v for k, v in options.items() if k != "device"}, default=str))
    with process_group() as rank:  # gloo: the ranks exchange only their outcomes, on the CPU
        groups = group_jobs(jobs)
        runner = _Runner(out, overwrite, options, settings, rank)
        mine = [outcome for group in shard(groups, rank, [len(group) for group in groups]) for outcome in runner.run_group(group)]
        outcomes = refused + [outcome for part in gather_objects(mine) for outcome in part]
        if rank.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_summary(out / SUMMARY_FILE, outcomes)
            counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "failed")}
            click.echo(f"{counts['done']} done, {counts['skipped']} skipped (complete before), {counts['failed']} failed; "
                       f"see {out / SUMMARY_FILE}")
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0
