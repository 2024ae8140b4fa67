"""`sgsim demo`: serve the interactive web page for sound-guided editing (needs the `demo` extra)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click

from sgsim.cli import Terminated
from sgsim.cli.options import device_option, setting_option, world_option
from sgsim.errors import SgsimError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "audio"  # the checkout's example sounds, if installed from one
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def start_demo(generator, encoder, encoder_checkpoint, clip_weights, device, host: str, port: int, examples: Path | None,
               workspace: Path, block: bool = True, world: str | None = None, photo_encoder: str | None = None):
    """Load the networks, then serve the page, keeping uploads and results in `workspace`.
    Returns the running server when block is False (the caller closes it). `world`: the world the networks come from
    (recorded); `photo_encoder`: the e4e / pSp file or name a photo's automatic inversion uses (the photo policy's)."""
    try:
        from sgsim.demo.page import DemoPage, serve
    except ImportError as exc:
        raise SgsimError(f"the demo needs its extra packages ({exc.name} is missing): pip install -e '.[demo]'") from None
    from sgsim.demo import DemoEngine, build_editor

    editor = build_editor(generator, encoder, encoder_checkpoint, clip_weights, device)  # missing weights fail before serving
    os.environ["GRADIO_TEMP_DIR"] = str(workspace / "uploads")  # Gradio's upload folder: the only files a page may name
    networks = {"generator": generator, "encoder": encoder, "encoder_checkpoint": encoder_checkpoint, "clip": clip_weights,
                "world": world, "photo_encoder": photo_encoder}
    engine = DemoEngine(editor, workspace / "results", {k: None if v is None else str(v) for k, v in networks.items()})
    page = DemoPage(engine, examples=examples if examples is not None and examples.is_dir() else None)
    if host not in LOCAL_HOSTS:
        click.echo(f"warning: serving on {host}: anyone who can reach this machine can run edits on it", err=True)
    click.echo(f"sgsim demo on http://{host}:{port} (Ctrl+C stops it)")
    return serve(page, host, port, block=block)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0 opens it to the network).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@setting_option("generator")
@setting_option("encoder")
@setting_option("encoder_checkpoint")
@setting_option("clip_weights")
@setting_option("photo_encoder")
@world_option
@device_option
@click.option("--examples", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of example .wav / .flac sounds listed on the page.  [default: the world's spoken words with "
                   "--world, else the checkout's examples/audio]")
def demo_command(host, port, generator, encoder, encoder_checkpoint, clip_weights, photo_encoder, world, device,
                 examples) -> None:
    """Serve an interactive page: upload or record a sound, edit an image toward it, tune the strength."""
    if examples is None:
        from sgsim.worlds import resolve_world

        examples = resolve_world(world).audio if world else EXAMPLES
    with tempfile.TemporaryDirectory(prefix="sgsim-demo-") as workspace:  # uploads and results go when the server stops
        server = None
        try:
            server = start_demo(generator, encoder, encoder_checkpoint, clip_weights, device, host, port, examples,
                                Path(workspace), block=False, world=world,
                                photo_encoder=photo_encoder)
            wait_for_stop()
        except (KeyboardInterrupt, Terminated):
            pass  # Ctrl+C and SIGTERM are how a server is stopped: neither is an error
        finally:
            if server is not None:
                server.close()
    click.echo("sgsim demo stopped")


def wait_for_stop() -> None:
    """Block until Ctrl+C or SIGTERM interrupts the wait."""
    while True:
        time.sleep(3600)
