"""`sgsim demo` on the command line: its flags reach the page, mistakes are one line before anything is served."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sgsim.cli import main


@pytest.fixture
def served(gradio, monkeypatch):
    """Replace the blocking server with a recorder of what it was asked to serve."""
    import sgsim.demo.page

    import sgsim.cli.demo

    calls = []

    class Server:
        def close(self) -> None:
            calls.append("closed")

    monkeypatch.setattr(sgsim.demo.page, "serve", lambda page, host, port, block=True: calls.append((page, host, port, block)) or Server())
    monkeypatch.setattr(sgsim.cli.demo, "wait_for_stop", lambda: calls.append("stop requested"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unchanged")  # start_demo points Gradio at its workspace; restored after
    return calls


def test_flags_reach_the_page_and_the_workspace_is_removed_after(served, tiny_generator_file, encoder_checkpoint_file,
                                                                  tiny_clip_space, shared_data):
    result = CliRunner().invoke(main, ["demo", "--generator", str(tiny_generator_file), "--encoder-checkpoint",
                                       str(encoder_checkpoint_file), "--device", "cpu", "--examples",
                                       str(shared_data / "audio")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [(page, host, port, block), *after] = served
    assert after == ["stop requested", "closed"] and result.output.endswith("sgsim demo stopped\n")
    assert (host, port, block) == ("127.0.0.1", 7860, False) and "http://127.0.0.1:7860" in result.output
    assert page.engine.editor.device.type == "cpu" and page.engine.editor.generator.img_resolution == 32
    assert page.engine.networks["generator"] == str(tiny_generator_file)
    assert [p.name for p in page.examples] == sorted(p.name for p in (shared_data / "audio").glob("*.wav"))
    assert page.uploads.parent.name.startswith("sgsim-demo-") and not page.uploads.parent.exists()


def test_missing_weights_are_one_line_before_anything_is_served(served, tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["demo"])
    assert "sgsim weights download ffhq" in one_error_line(result)
    assert served == []


@pytest.mark.parametrize("args, expected", [(["--port", "0"], "not in the range"), (["--examples", __file__], "is a file")])
def test_bad_flags_are_usage_errors(args, expected):
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 2 and expected in result.output, result.output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_stopping_the_demo_is_a_normal_stop_not_an_error(stop):
    """SIGTERM and Ctrl+C are how a server is stopped: the server closes, exit 0, no error line."""
    script = """
from sgsim import cli
import sgsim.cli.demo

class Server:
    def close(self):
        print("server closed", flush=True)

def serving():
    print("serving", flush=True)
    wait_for_stop()

wait_for_stop = sgsim.cli.demo.wait_for_stop
sgsim.cli.demo.start_demo = lambda *args, **kwargs: Server()
sgsim.cli.demo.wait_for_stop = serving
cli.main(["demo"])
"""
    # Started as a shell starts it: Ctrl+C at its default (an ignored SIGINT, which some earlier test's server may leave
    # in this process, would be inherited and the child would never see it).
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().strip() == "serving"
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == ["server closed", "sgsim demo stopped"] and stderr == ""


def test_the_command_is_listed():
    assert "demo" in CliRunner().invoke(main, ["--help"]).output
