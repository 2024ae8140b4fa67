"""`sgsim demo` on the command line: its flags reach the page, mistakes are one line before anything is served."""

from __future__ import annotations


import pytest
from click.testing import CliRunner

from sgsim.cli import main


@pytest.fixture
def served(gradio, monkeypatch):
    """Replace the blocking server with a recorder of what it was asked to serve."""
    import sgsim.demo.page

    calls = []
    monkeypatch.setattr(sgsim.demo.page, "serve", lambda page, host, port, block=True: calls.append((page, host, port, block)))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unchanged")  # start_demo points Gradio at its workspace; restored after
    return calls


def test_flags_reach_the_page_and_the_workspace_is_removed_after(served, tiny_generator_file, encoder_checkpoint_file,
                                                                  tiny_clip_space, shared_data):
    result = CliRunner().invoke(main, ["demo", "--generator", str(tiny_generator_file), "--encoder-checkpoint",
                                       str(encoder_checkpoint_file), "--device", "cpu", "--examples",
                                       str(shared_data / "audio")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [(page, host, port, block)] = served
    assert (host, port, block) == ("127.0.0.1", 7860, True) and "http://127.0.0.1:7860" in result.output
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


def test_the_command_is_listed():
    assert "demo" in CliRunner().invoke(main, ["--help"]).output
