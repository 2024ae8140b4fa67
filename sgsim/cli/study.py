"""`sgsim study`: a user study of edits as a static page of randomised A/B pairs, and the tally of its answers."""

from __future__ import annotations

from pathlib import Path

import click

from sgsim.cli.options import command_line, out_option
from sgsim.evaluation.study import MAX_PAIRS


@click.command("study")
@click.argument("items", nargs=-1, required=True, metavar="[LABEL=]DIR... | ANSWERS.json...")
@out_option(required=True)
@click.option("--tally", "study_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Read participants' answer files (the arguments) for this study folder and write the results table.")
@click.option("--pairs", "max_pairs", type=click.IntRange(1, 10_000), default=MAX_PAIRS, show_default=True,
              help="Most A/B pairs on the page (drawn at random from every matching edit).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the pairs' order and sides.")
def study_command(items, out, overwrite, study_dir, max_pairs, seed) -> None:
    """Write a user study of edits, or tally its answers.

    `sgsim study [LABEL=]DIR... --out STUDY`: each DIR is one condition (an edit, apply or batch output folder, e.g. one
    per audio encoder); edits of the same source, target and strength in two conditions make an A/B pair. STUDY/index.html
    is a static page (no server) that asks which edit shows the sound better and which keeps the source better, and saves
    each participant's answers as a JSON file.

    `sgsim study --tally STUDY ANSWERS.json... --out REPORT`: counts per question and pair of conditions, preference
    with a 95 % Wilson interval and an exact sign test, as results.md, .csv and .json.
    """
    from sgsim.atomic import staged_output_dir
    from sgsim.evaluation.study import make_study, parse_condition, results_markdown, tally_study, write_results
    from sgsim.outputs import is_run_folder, run_record, write_json

    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        if study_dir is None:
            conditions = [parse_condition(item) for item in items]
            count = make_study(conditions, staging, max_pairs=max_pairs, seed=seed)
            write_json(staging / "run.json", run_record("study", command_line(), conditions={l: str(p) for l, p in conditions},
                                                        pairs=count, seed=seed))
            click.echo(f"wrote a study of {count} pairs to {out}; open {out / 'index.html'} in a browser, "
                       f"collect the answer files, then: sgsim study --tally {out} ANSWERS.json... --out REPORT")
        else:
            results = tally_study(study_dir, [Path(item) for item in items])
            names = write_results(staging, results)
            write_json(staging / "run.json", run_record("study", command_line(), study=str(study_dir),
                                                        answer_files=list(items), outputs=[*names, "run.json"]))
            click.echo(results_markdown(results), nl=False)
            click.echo(f"wrote {', '.join(names)} to {out}")
