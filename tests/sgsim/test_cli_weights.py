"""`sgsim weights`: the command line over the weights manifest and cache."""

from __future__ import annotations

import pytest
import torch

import checkpoints
import stylegan2


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_list_shows_every_entry_and_presence(run, home):
    wav2clip = home / "weights" / checkpoints.entry("wav2clip").filename
    wav2clip.parent.mkdir(parents=True)
    wav2clip.write_bytes(b"\0" * (3 * 2**20))
    result = run("weights", "list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[1:-1]}
    assert set(lines) == {item.name for item in checkpoints.entries()}
    assert lines["wav2clip"][1:4] == ["yes", "3.0", "MiB"]
    assert lines["ffhq"][1:3] == ["no", "-"]


def test_path_of_missing_weights_is_one_line_with_instructions(run, home):
    result = run("weights", "path", "clip-vit-b-32")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: the clip-vit-b-32 weights")
    assert "sgsim weights download clip-vit-b-32" in result.output


def test_import_then_path_then_verify(run, home, tmp_path, encoder_checkpoint_file):
    source = tmp_path / "resnet18_57.pth"
    source.write_bytes(encoder_checkpoint_file.read_bytes())
    result = run("weights", "import", str(source), "--name", "sgsim-resnet18")
    assert result.exit_code == 0, result.output
    cached = home / "weights" / checkpoints.entry("sgsim-resnet18").filename
    assert result.output.strip() == str(cached)
    assert run("weights", "path", "sgsim-resnet18").output.strip() == str(cached)
    verified = run("weights", "verify")
    assert verified.exit_code == 0 and verified.output.startswith("sgsim-resnet18: ok sha256 ")
    cached.write_bytes(cached.read_bytes() + b"tampered")
    failed = run("weights", "verify", "sgsim-resnet18")
    assert failed.exit_code == 1
    assert "has changed or is damaged" in failed.output and "1 of 1 weights files failed" in failed.output


def test_import_of_a_wrong_file_fails_in_one_line(run, home, tmp_path):
    page = tmp_path / "ffhq.pkl"
    page.write_text("<html>sign in</html>")
    result = run("weights", "import", str(page), "--name", "ffhq")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "match no weights container" in result.output


def test_download_rejects_unknown_names_before_fetching(run, home):
    result = run("weights", "download", "ffhq", "ffhqq")
    assert result.exit_code == 1
    assert "unknown weights name 'ffhqq'" in result.output


def test_bad_flag_is_a_usage_error_without_traceback(run, home):
    result = run("weights", "path", "--bogus")
    assert result.exit_code == 2
    assert "No such option" in result.output and "Traceback" not in result.output


def test_convert_loads_by_name_and_writes_safetensors(run, home, tmp_path, monkeypatch):
    source = tmp_path / "g.pkl"
    source.write_bytes(b"generator")
    calls = []
    monkeypatch.setattr(stylegan2, "load_generator", lambda path: calls.append(("load", path)) or "G", raising=False)
    monkeypatch.setattr(stylegan2, "save_generator", lambda G, path: calls.append(("save", G, path)), raising=False)
    out = tmp_path / "g.safetensors"
    assert run("weights", "convert", str(source), str(out)).exit_code == 0
    assert calls == [("load", source), ("save", "G", out)]
    assert run("weights", "convert", str(source), str(tmp_path / "g.pt")).exit_code == 2


def test_list_fits_100_columns_and_says_which_sizes_are_not_published(run, home):
    lines = run("weights", "list").output.splitlines()
    assert lines[0].split()[:6] == ["NAME", "CACHED", "SIZE", "PUBLISHED", "SIZE", "KIND"]
    assert all(len(line) <= 100 for line in lines)
    rows = {line.split()[0]: line for line in lines[1:-1]}
    for item in checkpoints.entries():
        assert item.kind in rows[item.name].split()
        if item.size is None:
            assert "not published" in rows[item.name]
        else:
            value, unit = rows[item.name].split()[3:5]
            assert float(value) * 2 ** (20 if unit == "MiB" else 30) == pytest.approx(item.size, rel=0.001)
    assert "not published" not in rows["clip-vit-b-32"] and "unknown" not in "".join(lines)


def _state_dict_file(path):
    torch.save({"conv.weight": torch.ones(3, 1, 3, 3)}, path)
    return path


def test_download_from_a_given_url_into_a_cache_readable_by_all(run, home, tmp_path):
    source = _state_dict_file(tmp_path / "resnet18.pth")  # a local mirror, as a file:// URL
    result = run("weights", "download", "sgsim-resnet18", "--url", "file:///nowhere/x.pth", "--url", source.as_uri())
    assert result.exit_code == 0, result.output
    cached = home / "weights" / checkpoints.entry("sgsim-resnet18").filename
    assert cached.read_bytes() == source.read_bytes()
    assert cached.stat().st_mode & 0o777 == 0o644 and (home / "weights" / "checksums.json").stat().st_mode & 0o777 == 0o644
    assert "one at a time" in run("weights", "download", "ffhq", "wav2clip", "--url", source.as_uri()).output


def test_imported_files_are_readable_by_other_users(run, home, tmp_path, encoder_checkpoint_file):
    source = tmp_path / "resnet18.pth"
    source.write_bytes(encoder_checkpoint_file.read_bytes())
    source.chmod(0o600)
    assert run("weights", "import", str(source), "--name", "sgsim-resnet18").exit_code == 0
    assert (home / "weights" / checkpoints.entry("sgsim-resnet18").filename).stat().st_mode & 0o777 == 0o644


def test_download_tries_every_name_and_lists_every_failure(run, home, tmp_path, monkeypatch):
    fetched = _state_dict_file(tmp_path / "w.pth")
    real = checkpoints.download

    def offline_but_wav2clip(name, **kwargs):  # the manifest's hosts are unreachable here; wav2clip comes from a mirror
        if name == "wav2clip":
            return real(name, urls=(fetched.as_uri(),), progress=False)
        raise checkpoints.WeightsError(f"could not download {name}: cannot resolve host")

    monkeypatch.setattr(checkpoints, "download", offline_but_wav2clip)
    result = run("weights", "download", "ffhq", "wav2clip", "clip-vit-b-32")
    assert result.exit_code == 1
    assert "2 of 3 downloads failed" in result.output
    for name in ("ffhq", "clip-vit-b-32"):
        assert f"{name}: FAILED" in result.output and checkpoints.entry(name).urls[0] in result.output
        assert f"sgsim weights import FILE --name {name}" in result.output
    assert (home / "weights" / checkpoints.entry("wav2clip").filename).is_file()  # the name after a failure was still fetched
