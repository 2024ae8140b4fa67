"""The command line group: every user mistake is one line and a non-zero exit; bare groups show their help;
--help and --version answer without importing torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from sgsim.cli import COMMANDS


def test_unknown_flag_is_one_line_pointing_at_help(run):
    result = run("edit", "--bogus")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: No such option '--bogus'. Did you mean '--out'? (see 'sgsim edit --help')"]


def test_unknown_command_is_one_line(run):
    result = run("nosuch")
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == ["Error: No such command 'nosuch'. (see 'sgsim --help')"]


def test_user_error_from_the_library_is_one_line(run, tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path))
    result = run("weights", "path", "ffhq")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "sgsim weights download ffhq" in lines[0]


def test_bare_group_prints_its_help_and_succeeds(run):
    result = run("weights")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ") and "download" in result.output


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running `code` (which may exit through sys.exit)."""
    script = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint(' '.join(sys.modules), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(done.stderr.split())


@pytest.mark.parametrize("code", [
    "import sgsim.cli",
    "from sgsim.cli import main; main(['--help'])",
    "from sgsim.cli import main; main(['--version'])",
    *(f"from sgsim.cli import main; main([{name!r}, '--help'])" for name in ("edit", "apply", "batch", "direction", "demo",
                                                                            "generate", "invert", "weights", "train-encoder",
                                                                            "compare-encoders", "video")),
])
def test_help_and_version_do_not_import_torch(code):
    assert "torch" not in _modules_after(code)


def test_the_command_list_shows_each_commands_own_summary(run):
    for name, (module, attribute, summary) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert command.name == name and command.help.splitlines()[0] == summary, name
    listing = run("--help").output
    assert all(name in listing for name in COMMANDS)


def test_help_groups_the_commands_in_the_order_a_user_meets_them(run):
    from sgsim.cli import SECTIONS

    listed = [name for names in SECTIONS.values() for name in names]
    assert sorted(listed) == sorted(COMMANDS)  # each command in one section
    lines = run("--help").output.splitlines()
    headings = [line.rstrip(":") for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["Options", *SECTIONS]
    shown = [line.split()[0] for line in lines if line.startswith("  ") and line.split()[0] in COMMANDS]
    assert shown == listed
    assert shown[:2] == ["edit", "batch"] and shown[-1] == "weights"


def test_version_is_the_package_version(run):
    from sgsim import __version__

    assert run("--version").output.strip() == f"sgsim, version {__version__}"


def test_a_misspelt_command_gets_a_suggestion(run):
    result = run("edti")
    assert result.exit_code == 2 and "Did you mean 'edit'?" in result.output
