"""The `sgsim` command line: one click group; each subcommand lives in a module of its own."""

from __future__ import annotations

import click

from sgsim import __version__
from sgsim.errors import user_errors


class _Group(click.Group):
    """A click group that reports a user's mistake as one line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except user_errors() as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sgsim")
def main() -> None:
    """Sound-guided semantic image manipulation."""


from sgsim.cli.weights import weights  # noqa: E402  (registered once the group exists)

main.add_command(weights)

from sgsim.cli.edit import edit_command, generate_command  # noqa: E402

main.add_command(edit_command)
main.add_command(generate_command)

from sgsim.cli.compare_encoders import compare_encoders_command  # noqa: E402

main.add_command(compare_encoders_command)

from sgsim.cli.invert import invert_command  # noqa: E402

main.add_command(invert_command)

from sgsim.cli.train_encoder import train_encoder_command  # noqa: E402

main.add_command(train_encoder_command)
