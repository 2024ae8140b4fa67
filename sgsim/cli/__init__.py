"""The `sgsim` command line: one click group; each subcommand lives in a module of its own."""

from __future__ import annotations

import sys

import click

from sgsim import __version__
from sgsim.errors import user_errors


class _Group(click.Group):
    """A click group that reports every user mistake (bad flag or bad input) as one line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except user_errors() as exc:
            raise click.ClickException(str(exc)) from None

    def main(self, args=None, prog_name=None, **extra):
        """Run the CLI; click's usage errors become one line with a pointer to --help instead of the usage block."""
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help is the answer, not an error
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sgsim")
def main() -> None:
    """Sound-guided semantic image manipulation."""


def _register() -> None:
    """Attach every subcommand; imported here so `sgsim.cli` is the one place that lists them."""
    from sgsim.cli.compare_encoders import compare_encoders_command
    from sgsim.cli.edit import edit_command, generate_command
    from sgsim.cli.invert import invert_command
    from sgsim.cli.train_encoder import train_encoder_command
    from sgsim.cli.weights import weights

    for command in (edit_command, generate_command, invert_command, compare_encoders_command, train_encoder_command, weights):
        main.add_command(command)


_register()
