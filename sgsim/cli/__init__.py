"""The `sgsim` command line: one click group; each subcommand lives in a module of its own, imported only when
it runs, so `sgsim --help` and `sgsim --version` answer without loading torch."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import warnings
from typing import Iterator

import click

from sgsim import __version__
from sgsim.errors import SgsimNotice, UsageProblem, user_errors

# name -> (module, attribute, first line of the command's help, which `sgsim --help` shows without importing it;
# tests/sgsim/test_cli.py keeps it equal to the command's own)
COMMANDS = {
    "edit": ("sgsim.cli.edit", "edit_command", "Edit an image so that it shows a sound, a text or both."),
    "batch": ("sgsim.cli.batch", "batch_command",
              "Run the edits of a CSV of jobs, one folder each; resumable, and split over the processes of torchrun."),
    "generate": ("sgsim.cli.generate", "generate_command", "Draw the generator's images of some seeds, with their W+ latents for `sgsim edit --latent`."),
    "invert": ("sgsim.cli.invert", "invert_command", "Find the W+ latent of a photo with the generator, for `sgsim edit --latent`."),
    "compare-encoders": ("sgsim.cli.compare_encoders", "compare_encoders_command",
                         "Zero-shot and linear-probe accuracy of audio encoders, per official fold and averaged."),
    "train-encoder": ("sgsim.cli.train_encoder", "train_encoder_command",
                      "Train an SGSIM audio encoder on labelled audio (ESC-50, UrbanSound8K, VGGSound, a CSV or class folders)."),
    "video": ("sgsim.cli.video", "video_command", "Make a video whose picture follows a sound track over time."),
    "weights": ("sgsim.cli.weights", "weights", "Official weights: list, download, import, verify, locate, convert."),
    "demo": ("sgsim.cli.demo", "demo_command", "Serve an interactive page: upload or record a sound, edit an image toward it, tune the strength."),
    "direction": ("sgsim.cli.direction", "direction_command", "Learn a sound's direction once over many images, for instant edits with `sgsim apply`."),
    "apply": ("sgsim.cli.apply", "apply_command", "Apply learned sound directions to images instantly: one generator pass per image and strength."),
    "evaluate": ("sgsim.cli.evaluate", "evaluate_command", "Measure edits: how strongly each image shows its target, and how much of the source it keeps."),
    "reproduce": ("sgsim.cli.reproduce", "reproduce_command", "Reproduce the paper's tables and figures: `paper` (examples/reproduce/paper.json) or a job file."),
    "study": ("sgsim.cli.study", "study_command", "Write a user study of edits, or tally its answers."),
    "world": ("sgsim.cli.world", "world_command", "Miniature worlds trained here, whose edits a judge that is not CLIP can score."),
}


class Terminated(SystemExit):
    """SIGTERM arrived. A command stops with exit 143 and one line; a server (`sgsim demo`) catches it as its
    normal way to stop."""

# How `sgsim --help` groups the commands, in the order a user meets them: edit first, then the fast path of learned
# directions, then the latents edits start from, the audio encoders, and the weights everything needs.
SECTIONS = {
    "Edit images with sounds": ("edit", "batch", "video", "demo"),
    "Learn a sound's direction once, apply it instantly": ("direction", "apply"),
    "Latents to edit": ("generate", "invert"),
    "Measure edits, reproduce the paper": ("evaluate", "reproduce", "study"),
    "Audio encoders": ("train-encoder", "compare-encoders"),
    "Worlds trained here, for edits a judge can score": ("world",),
    "Weights": ("weights",),
}


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into Terminated(143) while a command runs, so `finally` blocks remove its staging folder
    (Python's default for SIGTERM is to die on the spot). Only the main thread may set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _notices_as_lines() -> Iterator[None]:
    """Show sgsim's notices (SgsimNotice warnings, from anywhere in the library) as one `note: ...` line written
    above any progress bar, instead of Python's `file:line: UserWarning` and source line; other warnings as usual."""
    with warnings.catch_warnings():  # restores showwarning when the command ends
        python_way = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, SgsimNotice):
                from tqdm import tqdm

                tqdm.write(f"note: {message}", file=sys.stderr)  # clears a bar's line, prints, redraws the bar below
            else:
                python_way(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


class _LazyCommands(dict):
    """name -> command, importing a command's module the first time it is looked up (main.commands["edit"] works)."""

    def __missing__(self, name: str) -> click.Command:
        if name not in COMMANDS:
            raise KeyError(name)
        module, attribute, _ = COMMANDS[name]
        self[name] = getattr(importlib.import_module(module), attribute)
        return self[name]

    def __iter__(self):  # every name, loaded or not: click suggests close names from these ("Did you mean 'edit'?")
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS


class _Group(click.Group):
    """A click group that loads each subcommand on first use and reports every user mistake (bad flag or bad
    input) as one line and a non-zero exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for names in SECTIONS.values() for name in names]

    def get_command(self, ctx: click.Context, name: str):
        return self.commands[name] if name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = max(len(name) for name in COMMANDS)  # one column for every section
        limit = formatter.width - 6 - width  # as click.Group lays out its commands
        for title, names in SECTIONS.items():
            with formatter.section(title):
                formatter.write_dl([(name.ljust(width), click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit))
                                    for name in names])

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        """Keep the command line as typed, for run records (sgsim.cli.options.command_line)."""
        argv = [info_name or "sgsim", *args]
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta["sgsim.argv"] = argv
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            with _sigterm_unwinds(), _notices_as_lines():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # matched first, so `--help` does not evaluate user_errors(), whose imports load torch
        except Terminated:
            click.echo("Error: terminated (SIGTERM); nothing was written", err=True)
            raise
        except UsageProblem as exc:  # the library's word for flags that cannot work together: a usage error, exit 2
            raise click.UsageError(str(exc)) from None
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


@click.group(cls=_Group, commands=_LazyCommands())
@click.version_option(__version__, prog_name="sgsim")
def main() -> None:
    """Sound-guided semantic image manipulation."""

