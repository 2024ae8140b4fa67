"""`sgsim weights`: the command line over the weights manifest and cache."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import checkpoints
import stylegan2
from sgsim.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(*args: str):
    return CliRunner().invoke(main, ["weights", *args])


def test_list_shows_every_entry_and_presence(home):
    wav2clip = home / "weights" / checkpoints.entry("wav2clip").filename
    wav2clip.parent.mkdir(parents=True)
    wav2clip.write_bytes(b"\0" * (3 * 2**20))
    result = run("list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[1:-1]}
    assert set(lines) == {item.name for item in checkpoints.entries()}
    assert lines["wav2clip"][1:4] == ["yes", "3.0", "MiB"]
    assert lines["ffhq"][1:3] == ["no", "-"]


def test_path_of_missing_weights_is_one_line_with_instructions(home):
    result = run("path", "clip-vit-b-32")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: the clip-vit-b-32 weights")
    assert "sgsim weights download clip-vit-b-32" in result.output


def test_import_then_path_then_verify(home, tmp_path):
    source = tmp_path / "resnet18_57.pth"
    torch.save({"conv.weight": torch.ones(3, 1, 3, 3)}, source)
    result = run("import", str(source), "--name", "sgsim-resnet18")
    assert result.exit_code == 0, result.output
    cached = home / "weights" / checkpoints.entry("sgsim-resnet18").filename
    assert result.output.strip() == str(cached)
    assert run("path", "sgsim-resnet18").output.strip() == str(cached)
    verified = run("verify")
    assert verified.exit_code == 0 and verified.output.startswith("sgsim-resnet18: ok sha256 ")
    cached.write_bytes(cached.read_bytes() + b"tampered")
    failed = run("verify", "sgsim-resnet18")
    assert failed.exit_code == 1
    assert "has changed or is damaged" in failed.output and "1 of 1 weights files failed" in failed.output


def test_import_of_a_wrong_file_fails_in_one_line(home, tmp_path):
    page = tmp_path / "ffhq.pkl"
    page.write_text("<html>sign in</html>")
    result = run("import", str(page), "--name", "ffhq")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "match no weights container" in result.output


def test_download_rejects_unknown_names_before_fetching(home):
    result = run("download", "ffhq", "ffhqq")
    assert result.exit_code == 1
    assert "unknown weights name 'ffhqq'" in result.output


def test_bad_flag_is_a_usage_error_without_traceback(home):
    result = run("path", "--bogus")
    assert result.exit_code == 2
    assert "No such option" in result.output and "Traceback" not in result.output


def test_convert_loads_by_name_and_writes_safetensors(home, tmp_path, monkeypatch):
    source = tmp_path / "g.pkl"
    source.write_bytes(b"generator")
    calls = []
    monkeypatch.setattr(stylegan2, "load_generator", lambda path: calls.append(("load", path)) or "G", raising=False)
    monkeypatch.setattr(stylegan2, "save_generator", lambda G, path: calls.append(("save", G, path)), raising=False)
    out = tmp_path / "g.safetensors"
    assert run("convert", str(source), str(out)).exit_code == 0
    assert calls == [("load", source), ("save", "G", out)]
    assert run("convert", str(source), str(tmp_path / "g.pt")).exit_code == 2
