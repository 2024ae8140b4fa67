"""`sgsim batch`: many edits from a CSV of jobs, each written as `sgsim edit` writes one; resumable, and split over
the processes of `torchrun --nproc_per_node N` (one device each) when started under it."""

from __future__ import annotations

from pathlib import Path

import click

from sgsim.cli.options import command_line, device_option, edit_options
from sgsim.settings import GROUPS, EditSettings


@click.command("batch")
@click.argument("jobs_file", metavar="JOBS.csv", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder of the job folders (OUT/<name>/, as `sgsim edit` writes) and summary.csv.")
@click.option("--overwrite", is_flag=True, help="Replace a job's folder even if it holds files sgsim did not write.")
@device_option
@edit_options(*GROUPS, leave_out=("free",))  # every job names its own source
def batch_command(jobs_file, out, overwrite, device, settings: EditSettings) -> int:
    """Run the edits of a CSV of jobs, one folder each; resumable, and split over the processes of torchrun.

    JOBS.csv has a header and one row per job: name, audio and/or text, exactly one of seed / image / latent, and
    optionally strength and class (relative paths are relative to the CSV). Jobs sharing a source are optimised
    together. A job whose folder is complete is skipped; a bad row or a failing job is recorded in OUT/summary.csv
    without stopping the others; the exit code is 1 unless every job succeeded. Under `torchrun --nproc_per_node N`
    the jobs are split over the N processes, each on its own device.
    """
    from sgsim.jobs import run_jobs

    return run_jobs(jobs_file, out, overwrite, settings, device, command_line(), lambda message, error: click.echo(message, err=error))
