"""`sgsim weights`: list, download, import, verify, locate and convert the official weights files."""

from __future__ import annotations

from pathlib import Path

import click

import checkpoints
from checkpoints.errors import WeightsError


def _human_size(size: int | None) -> str:
    """Bytes as MiB or GiB for the table; '-' when unknown."""
    if size is None:
        return "-"
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


@click.group("weights")
def weights() -> None:
    """Official weights: list, download, import, verify, locate, convert."""


LIST_WIDTH = 100  # `weights list` fits a 100-column terminal; descriptions are cut to what is left


@weights.command("list")
def list_command() -> None:
    """Show every official weights file: whether it is cached, its size there, the size its publisher states, its
    kind and purpose (`sgsim weights path NAME` tells where a missing one comes from)."""
    rows = [("NAME", "CACHED", "SIZE", "PUBLISHED SIZE", "KIND", "DESCRIPTION")]
    for item in checkpoints.entries():
        path = checkpoints.weights_dir() / item.filename
        present = path.is_file()
        rows.append((item.name, "yes" if present else "no", _human_size(path.stat().st_size if present else None),
                     _human_size(item.size) if item.size else "not published", item.kind, item.description))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    room = LIST_WIDTH - sum(widths) - 2 * len(widths)
    for row in rows:
        description = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + description)
    click.echo(f"cache: {checkpoints.weights_dir()}")


@weights.command("download")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Fetch again even when the file is already cached.")
@click.option("--url", "urls", multiple=True, help="Fetch from this URL instead of the manifest's (a mirror or local server); repeat to try several.")
def download_command(names: tuple[str, ...], force: bool, urls: tuple[str, ...]) -> None:
    """Download weights by name into the cache (resumes interrupted downloads). Every name is tried; the ones that
    failed are listed at the end, each with its URL and the `weights import` route."""
    for name in names:
        checkpoints.entry(name)  # a typo fails before any transfer starts
    if urls and len(names) > 1:
        raise click.UsageError(f"--url gives where one file is; download the {len(names)} names one at a time with their own --url")
    failed = []
    for name in names:
        try:
            click.echo(checkpoints.download(name, force=force, urls=urls or None))
        except WeightsError as exc:
            failed.append(name)
            click.echo(f"{name}: FAILED: {exc}", err=True)
    if failed:
        listed = "; ".join(f"{name} from {checkpoints.entry(name).urls[0]} then `sgsim weights import FILE --name {name}`" for name in failed)
        raise WeightsError(f"{len(failed)} of {len(names)} downloads failed (see above): {listed}")


@weights.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The manifest name this file is (see `sgsim weights list`).")
@click.option("--force", is_flag=True, help="Keep a file that is not what NAME promises (other resolution, W+ rows, "
              "architecture or embedding size); the cache records it and `weights verify` says so.")
def import_command(file: Path, name: str, force: bool) -> None:
    """Copy a file downloaded elsewhere into the cache, after checking its format, its checksum and that it holds
    what NAME promises (a generator's resolution and W+ rows, an encoder's or CLIP's architecture and embedding size)."""
    from sgsim.weights_check import import_weights

    click.echo(import_weights(file, name, force=force))


@weights.command("verify")
@click.argument("names", nargs=-1)
def verify_command(names: tuple[str, ...]) -> None:
    """Re-hash cached files (all present ones when no NAME is given) against the manifest or recorded checksums, and
    check that a file without a published checksum holds what its name promises."""
    from sgsim.weights_check import verify_weights

    if not names:
        names = tuple(item.name for item in checkpoints.entries() if (checkpoints.weights_dir() / item.filename).is_file())
        if not names:
            click.echo(f"no weights in the cache {checkpoints.weights_dir()}")
            return
    failed = 0
    for name in names:
        try:
            result = verify_weights(name)
        except WeightsError as exc:
            failed += 1
            click.echo(f"{name}: FAILED: {exc}", err=True)
            continue
        forced = f"; imported with --force although {result.forced}" if result.forced else ""
        click.echo(f"{name}: {result.status} sha256 {result.sha256} ({result.size} bytes){forced}")
    if failed:
        raise WeightsError(f"{failed} of {len(names)} weights files failed verification (see above)")


@weights.command("path")
@click.argument("name")
def path_command(name: str) -> None:
    """Print the local path of cached weights (fails with instructions when they are missing)."""
    click.echo(checkpoints.resolve(name))


@weights.command("convert")
@click.argument("source")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def convert_command(source: str, out: Path) -> None:
    """Convert a generator checkpoint (any supported format, by name or path) to a plain .safetensors file."""
    if out.suffix != ".safetensors":
        raise click.BadParameter(f"{out} must end in .safetensors", param_hint="OUT")
    from stylegan2 import load_generator, save_generator

    save_generator(load_generator(checkpoints.resolve(source)), out)
    click.echo(out)
