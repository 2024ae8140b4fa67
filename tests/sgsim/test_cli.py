"""The command line group: every user mistake is one line and a non-zero exit; bare groups show their help."""

from __future__ import annotations

from click.testing import CliRunner

from sgsim.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="sgsim")


def test_unknown_flag_is_one_line_pointing_at_help():
    result = run("edit", "--bogus")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: No such option '--bogus'. Did you mean '--out'? (see 'sgsim edit --help')"]


def test_unknown_command_is_one_line():
    result = run("nosuch")
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == ["Error: No such command 'nosuch'. (see 'sgsim --help')"]


def test_user_error_from_the_library_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path))
    result = run("weights", "path", "ffhq")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "sgsim weights download ffhq" in lines[0]


def test_bare_group_prints_its_help_and_succeeds():
    result = run("weights")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ") and "download" in result.output
