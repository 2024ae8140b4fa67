"""`sgsim evaluate`: how strongly edits show their targets and how much of the source they keep."""

from __future__ import annotations

from pathlib import Path

import click

from sgsim.cli.options import command_line, device_option, out_option


@click.command("evaluate")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option(required=True)
@click.option("--encoder", default=None, metavar="NAME[=CHECKPOINT]",
              help="Embed every target with this audio encoder instead of the one each run recorded.")
@click.option("--clip", default=None, help="CLIP weights (manifest name or path) for --encoder; default: its own.")
@click.option("--identity", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="ArcFace identity similarity: for face generators (auto), for every run (on), or never (off).")
@click.option("--identity-weights", default="arcface-ir-se50", show_default=True, help="ArcFace weights: manifest name or path.")
@click.option("--lpips-weights", default="lpips-vgg16", show_default=True, help="LPIPS-VGG16 weights: manifest name or path.")
@click.option("--neutral-text", default="a photo", show_default=True,
              help="Caption the target's change is measured from, for the CLIP direction similarity.")
@device_option
def evaluate_command(folders, out, overwrite, encoder, clip, identity, identity_weights, lpips_weights, neutral_text, device) -> None:
    """Measure edits: how strongly each image shows its target, and how much of the source it keeps.

    Reads the folders sgsim edit, apply and batch write (each FOLDER or the runs below it) and, per edited image, with
    the networks its run recorded: CLIP similarity to the sound's and the text's embedding and its gain over the source,
    CLIP direction similarity, ArcFace identity similarity (face generators), LPIPS and latent distance to the source.
    Writes report.md, edits.csv, summary.csv (mean and 95 % half-width per guide, encoder and strength), report.json
    and tradeoff.png.
    """
    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.evaluation.edits import Guide, evaluate_edits, find_runs, markdown, write_edit_report
    from sgsim.outputs import is_run_folder, run_record, write_json

    if clip is not None and encoder is None:
        raise click.UsageError("--clip goes with --encoder (a run's own CLIP is the one it recorded)")
    guide = None
    if encoder is not None:
        name, _, checkpoint = encoder.partition("=")
        guide = Guide(name, checkpoint or None, clip)
    find_runs(folders)  # a folder that is no sgsim run fails now, before any network loads
    device = parse_device(device)
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        report = evaluate_edits(folders, guide, identity, identity_weights, lpips_weights, neutral_text, device)
        names = write_edit_report(staging, report)
        write_json(staging / "run.json", run_record("evaluate", command_line(), folders=[str(f) for f in folders],
                                                    edits=len(report.rows), missing=report.missing, outputs=[*names, "run.json"]))
    click.echo(markdown(report.summary, report.missing), nl=False)
    click.echo(f"measured {len(report.rows)} edited images; wrote {', '.join(names)} and run.json to {out}")
