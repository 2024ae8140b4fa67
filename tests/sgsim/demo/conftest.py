"""The demo running on the tiny real-format networks (the Chromium that drives it is tests/conftest.py's).

Without the demo extra these tests are skipped, unless SGSIM_REQUIRE_BROWSER=1 (CI sets it) makes its absence a failure.
"""

from __future__ import annotations

import struct
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def gradio(optional_import):
    """The gradio module (the demo extra)."""
    return optional_import("gradio")


@pytest.fixture(scope="module")
def demo_server(gradio, free_port, tmp_path_factory, tiny_generator_file, encoder_checkpoint_file, tiny_clip_space, shared_data, monkeypatch_module):
    """`sgsim demo`'s start-up on the tiny networks, served on a free local port; yields (url, workspace); stopped after."""
    from sgsim.cli.demo import start_demo

    workspace = tmp_path_factory.mktemp("demo")
    monkeypatch_module.setenv("GRADIO_TEMP_DIR", str(workspace))  # start_demo points it into the workspace; restored after
    port = free_port()
    server = start_demo(str(tiny_generator_file), "sgsim-resnet18", encoder_checkpoint_file, None, "cpu", "127.0.0.1", port,
                        shared_data / "audio", workspace, block=False)
    try:
        yield f"http://127.0.0.1:{port}", workspace
    finally:
        server.close()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def engine(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space, tmp_path_factory):
    """A DemoEngine on the tiny networks with its own results folder, one per test module."""
    from sgsim.demo import DemoEngine, build_editor

    editor = build_editor(str(tiny_generator_file), "sgsim-resnet18", encoder_checkpoint_file, None, "cpu")
    return DemoEngine(editor, tmp_path_factory.mktemp("results"), {"generator": str(tiny_generator_file)})


@pytest.fixture(scope="session")
def gif_claiming():
    """gif(width, height) -> a 29-byte GIF whose header claims width x height (PIL refuses 65535x65535 as a bomb)."""
    def gif(width: int, height: int) -> bytes:
        header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
        image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
        return header + image + b"\x3b"

    return gif
