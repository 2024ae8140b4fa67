"""`sgsim batch`: many edits from a CSV of jobs, each written as `sgsim edit` writes one; resumable, and split over
the processes of `torchrun --nproc_per_node N` (one device each) when started under it."""

from __future__ import annotations

from pathlib import Path

import click

from sgsim.cli.options import command_line, edit_settings


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
    from sgsim.jobs import run_jobs

    options = {"invert_steps": invert_steps, "refine_steps": refine_steps, "align": align, "generator": generator, "encoder": encoder,
               "encoder_checkpoint": encoder_checkpoint, "clip_weights": clip_weights, "preset": preset, "steps": steps, "lr": lr,
               "lambda_latent": lambda_latent, "lambda_id": lambda_id, "loss_weights": loss_weights, "mix": mix,
               "loudness_strength": loudness_strength, "device": device, "save_video": save_video, "precision": precision,
               "strengths": strengths}
    return run_jobs(jobs_file, out, overwrite, options, command_line(), lambda message, error: click.echo(message, err=error))
