"""`sgsim reproduce`: the paper's tables and figures, from a job file that names every sound, seed and setting."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sgsim.cli.options import command_line, device_option, out_option


def _datasets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Path]:
    pairs = {}
    for value in values:
        key, equals, folder = value.partition("=")
        if not equals or not key or not folder:
            raise click.BadParameter(f"{value!r} is not NAME=FOLDER, such as esc50=data/ESC-50-master")
        pairs[key] = Path(folder)
    return pairs


@click.command("reproduce")
@click.argument("job")
@out_option(required=True)
@click.option("--dataset", "datasets", multiple=True, callback=_datasets, metavar="NAME=FOLDER",
              help="A dataset the job's tables use, e.g. esc50=ESC-50-master urbansound8k=UrbanSound8K (repeat).")
@click.option("--skip-tables", is_flag=True, help="Only the figures, comparisons and ablations (no datasets needed).")
@click.option("--steps", type=click.IntRange(1, 100_000), default=None, help="Steps of every edit instead of the job's (a quick look).")
@device_option
def reproduce_command(job, out, overwrite, datasets, skip_tables, steps, device) -> None:
    """Reproduce the paper's tables and figures: `paper` (examples/reproduce/paper.json) or a job file.

    `world-shapes` runs the same measurements on the shapes world, offline, each edit judged by the world's judge.

    Writes OUT/<table>/ (encoders.md/.csv/.json/.png with the paper's numbers beside) and, per experiment,
    OUT/<experiment>/grid.png (a row per seed and sound: the source, then each variant), each variant's edit folders
    and their measurements (OUT/<experiment>/<variant>/measured/), and OUT/report.md with the total seconds taken.
    Every missing weights file and dataset is named at once, before any work.
    """
    from dataclasses import replace

    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.evaluation.reproduce import check_ready, job_path, read_job, run_experiment, run_table
    from sgsim.outputs import is_run_folder, run_record, write_json, write_text

    plan = read_job(job_path(job))
    if skip_tables:
        plan = replace(plan, tables=())
    check_ready(plan, datasets)
    device = parse_device(device)
    started = time.perf_counter()
    report = [f"# Reproduced: {plan.name}\n"]
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        for table in plan.tables:
            click.echo(f"table {table.name}: {', '.join(table.encoders)} on {', '.join(table.datasets)}")
            report.append(f"## {table.name}\n\n" + run_table(table, datasets, staging / table.name, device))
        for experiment in plan.experiments:
            tables = run_experiment(experiment, staging / experiment.name, device, click.echo, steps)
            report.append(f"## {experiment.title}\n\n![{experiment.name}]({experiment.name}/grid.png)\n\n" +
                          "\n".join(f"### {label}\n\n{text}" for label, text in tables.items()))
        total = time.perf_counter() - started
        report.append(f"## Cost\n\n{total:.1f} s in total on {device} (run.json: timings_s.total).\n")
        write_text(staging / "report.md", "\n".join(report))
        write_json(staging / "run.json", run_record("reproduce", command_line(), job=str(plan.path), steps=steps,
                                                    datasets={k: str(v) for k, v in datasets.items()}, device=str(device),
                                                    world=plan.world, timings_s={"total": total}))
    click.echo(f"wrote {plan.name}'s tables and figures to {out} (report.md) in {time.perf_counter() - started:.0f} s")
