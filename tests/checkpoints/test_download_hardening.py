"""A cut, trickled or redirected download: nothing incomplete is ever placed in the cache or given a checksum."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save

import checkpoints
from checkpoints.containers import ContainerError, check_complete, sniff_container
from checkpoints.errors import WeightsError


def _entry(server, path: str, fmt: str, filename: str = "tiny.bin", **fields) -> dict:
    return {"name": "tiny", "filename": filename, "urls": [server.url + path], "format": fmt, "kind": "generator", **fields}


def _safetensors_bytes() -> bytes:
    return save({"w": torch.randn(200, 200, generator=torch.Generator().manual_seed(1))})


def _pickle_bytes() -> bytes:
    return pickle.dumps({"w": bytes(range(256)) * 1000}, protocol=4)


CUT_FILES = {  # manifest format, complete file
    "safetensors": ("safetensors", _safetensors_bytes),
    "pickle": ("nvidia-pickle", _pickle_bytes),
    "torch-zip": ("torch-state-dict", None),  # uses the state_dict_bytes fixture
}


@pytest.mark.parametrize("kind", list(CUT_FILES))
def test_a_download_cut_without_content_length_is_not_accepted(sgsim_home, file_server, test_manifest, state_dict_bytes, kind):
    fmt, make = CUT_FILES[kind]
    body = make() if make else state_dict_bytes
    file_server.files["/w"] = body
    file_server.cut_without_length.add("/w")
    test_manifest([_entry(file_server, "/w", fmt)])
    with pytest.raises(WeightsError, match="incomplete or corrupt|or a truncated file"):
        checkpoints.download("tiny", progress=False)
    assert not (sgsim_home / "weights" / "tiny.bin").exists()
    assert not (sgsim_home / "weights" / "checksums.json").exists()
    file_server.cut_without_length.clear()  # the valid run after it fetches the whole file
    assert checkpoints.download("tiny", progress=False).read_bytes() == body
    assert checkpoints.verify("tiny").status == "ok"


def test_import_of_a_cut_file_is_refused(sgsim_home, tmp_path, test_manifest, file_server):
    body = _safetensors_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(body[: len(body) - 100])
    test_manifest([_entry(file_server, "/w", "safetensors")])
    with pytest.raises(WeightsError, match="outside the file"):
        checkpoints.import_file(cut, "tiny")
    assert not (sgsim_home / "weights").exists() or not any((sgsim_home / "weights").iterdir())


def test_a_trickling_server_meets_the_deadline_and_the_part_is_kept(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/w"] = state_dict_bytes
    file_server.trickle.add("/w")
    test_manifest([_entry(file_server, "/w", "torch-state-dict")])
    with pytest.raises(WeightsError, match="did not finish within the 1.5 s deadline"):
        checkpoints.download("tiny", progress=False, deadline=1.5)
    part = sgsim_home / "weights" / "tiny.bin.part"
    assert 0 < part.stat().st_size < len(state_dict_bytes)
    file_server.trickle.clear()
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes


def test_urls_argument_and_mirrors_file_replace_the_manifest_urls(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/local.pt"] = state_dict_bytes
    test_manifest([_entry(file_server, "/gone.pt", "torch-state-dict")])
    path = checkpoints.download("tiny", progress=False, urls=(file_server.url + "/local.pt",))
    assert path.read_bytes() == state_dict_bytes
    assert [p for p, _ in file_server.requests] == ["/local.pt"]
    path.unlink()
    file_server.requests.clear()
    sgsim_home.mkdir(exist_ok=True)
    (sgsim_home / "mirrors.json").write_text(json.dumps({"tiny": [file_server.url + "/local.pt"]}))
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes
    assert [p for p, _ in file_server.requests] == ["/local.pt"]


def test_a_malformed_mirrors_file_is_one_clear_error(sgsim_home, file_server, test_manifest):
    test_manifest([_entry(file_server, "/gone.pt", "torch-state-dict")])
    sgsim_home.mkdir()
    (sgsim_home / "mirrors.json").write_text('{"tiny": "http://not-a-list"}')
    with pytest.raises(WeightsError, match="map weights names to lists of URLs"):
        checkpoints.download("tiny", progress=False)


def _safetensors_with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


BROKEN = {
    "header-beyond-file": (struct.pack("<Q", 10**6) + b'{"a": 1}', "truncated safetensors header"),
    "header-not-json": (struct.pack("<Q", 5) + b"{abcd", "not valid JSON"),
    "offsets-beyond-file": (_safetensors_with_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
                            "outside the file"),
    "size-not-shape": (_safetensors_with_header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16),
                       "dtype and shape need 12"),
    "overlap": (_safetensors_with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12), "overlap"),
    "negative-offset": (_safetensors_with_header({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}, b"\0"),
                        "outside the file"),
    "pickle-without-stop": (pickle.dumps([1, 2, 3], protocol=4)[:-1], "cut short"),
    "pickle-then-junk": (pickle.dumps([1, 2, 3], protocol=4) + b"junk", "extra bytes after STOP"),
    "pickle-huge-binbytes8": (b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x.", "past the end of the file"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_check_complete_names_what_is_wrong(tmp_path, kind):
    data, message = BROKEN[kind]
    path = tmp_path / "file"
    path.write_bytes(data)
    with pytest.raises(ContainerError, match=message):
        check_complete(path, sniff_container(path))


def test_whole_files_pass(tmp_path, state_dict_bytes):
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buffer, _use_new_zipfile_serialization=False)
    for name, data in {"st": _safetensors_bytes(), "pkl": _pickle_bytes(), "zip": state_dict_bytes, "legacy": buffer.getvalue()}.items():
        path = tmp_path / name
        path.write_bytes(data)
        check_complete(path, sniff_container(path))


def test_verify_finds_a_cut_file_whose_checksum_was_recorded(sgsim_home, file_server, test_manifest):
    """Caches filled before downloads checked structure may hold a cut file with its own checksum recorded."""
    body = _safetensors_bytes()
    test_manifest([_entry(file_server, "/w", "safetensors")])
    weights = sgsim_home / "weights"
    weights.mkdir(parents=True)
    cut = body[: len(body) // 2]
    (weights / "tiny.bin").write_bytes(cut)
    (weights / "checksums.json").write_text(json.dumps({"tiny": {"sha256": hashlib.sha256(cut).hexdigest(), "size": len(cut)}}))
    with pytest.raises(WeightsError, match=r"outside the file.*sgsim weights download tiny"):
        checkpoints.verify("tiny")


def test_a_stalled_url_is_given_up_for_the_next_which_resumes_the_part(sgsim_home, file_server, test_manifest, state_dict_bytes):
    """1 byte every 0.5 s is far within a 60 s deadline but below 100 bytes/s over 1 s: the next URL takes over."""
    file_server.files["/slow"] = file_server.files["/fast"] = state_dict_bytes
    file_server.trickle.add("/slow")
    test_manifest([_entry(file_server, "/slow", "torch-state-dict")])
    stall = checkpoints.StallRule(min_bytes_per_s=100, window_s=1.0)
    with pytest.raises(WeightsError, match=r"below the stall limit of 100 bytes/s over 1 s.*kept in") as caught:
        checkpoints.download("tiny", progress=False, deadline=60, stall=stall)
    assert "\n" not in str(caught.value)
    part = sgsim_home / "weights" / "tiny.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < len(state_dict_bytes)
    urls = (file_server.url + "/slow", file_server.url + "/fast")
    assert checkpoints.download("tiny", progress=False, deadline=60, stall=stall, urls=urls).read_bytes() == state_dict_bytes
    path, requested = file_server.requests[-1]
    assert path == "/fast" and int(requested.removeprefix("bytes=").rstrip("-")) > kept  # resumed the slow URL's .part
    assert not part.exists()


def test_a_redirect_loop_is_one_line(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.redirects.update({"/a": "/b", "/b": "/a"})
    file_server.files["/w"] = state_dict_bytes
    test_manifest([_entry(file_server, "/a", "torch-state-dict")])
    with pytest.raises(WeightsError, match="redirects in a loop") as caught:
        checkpoints.download("tiny", progress=False)
    assert "\n" not in str(caught.value)
    assert checkpoints.download("tiny", progress=False, urls=(file_server.url + "/w",)).read_bytes() == state_dict_bytes


@pytest.mark.parametrize("table, message", [
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"tiny": ["file:///dev/zero"]}', "not an http"),
    ('{"tiny": ["ftp://127.0.0.1/w"]}', "not an http"),
])
def test_hostile_mirrors_files_are_one_line(sgsim_home, file_server, test_manifest, state_dict_bytes, table, message):
    file_server.files["/w"] = state_dict_bytes
    test_manifest([_entry(file_server, "/w", "torch-state-dict")])
    sgsim_home.mkdir()
    (sgsim_home / "mirrors.json").write_text(table)
    with pytest.raises(WeightsError, match=message) as caught:
        checkpoints.download("tiny", progress=False)
    assert "\n" not in str(caught.value)
    assert not (sgsim_home / "weights").exists() or not any((sgsim_home / "weights").iterdir())
    (sgsim_home / "mirrors.json").unlink()
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes


def test_a_source_sending_more_than_the_size_bound_is_cut_and_nothing_kept(sgsim_home, file_server, test_manifest,
                                                                           state_dict_bytes, monkeypatch):
    """A stream without end (file:///dev/zero, a server ignoring sizes) stops at the manifest's size or the cap."""
    monkeypatch.setattr(importlib.import_module("checkpoints.download"), "MAX_UNKNOWN_SIZE", 3 << 20)
    file_server.files["/w"] = state_dict_bytes
    file_server.files["/big"] = state_dict_bytes + b"\0" * (4 << 20)
    test_manifest([_entry(file_server, "/w", "torch-state-dict")])
    for url in ("file:///dev/zero", file_server.url + "/big"):
        with pytest.raises(WeightsError, match="bytes or more, more than the .* GiB any weights file may have") as caught:
            checkpoints.download("tiny", progress=False, urls=(url,))
        assert "\n" not in str(caught.value)
        assert not any((sgsim_home / "weights").iterdir())
    test_manifest([_entry(file_server, "/w", "torch-state-dict", size=len(state_dict_bytes))])
    with pytest.raises(WeightsError, match=f"the manifest says {len(state_dict_bytes)}"):
        checkpoints.download("tiny", progress=False, urls=(file_server.url + "/big",))
    assert not any((sgsim_home / "weights").iterdir())
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes


def test_a_redirect_away_from_http_and_a_length_that_is_not_a_number(sgsim_home, file_server, test_manifest, state_dict_bytes):
    """A server may send the client to ftp:// (urllib would follow) or say "Content-Length: many" (was a ValueError)."""
    file_server.redirects["/to-ftp"] = "ftp://127.0.0.1:9/w"
    file_server.files["/w"] = state_dict_bytes
    file_server.bad_length.add("/w")
    test_manifest([_entry(file_server, "/to-ftp", "torch-state-dict")])
    with pytest.raises(WeightsError, match="redirects to 'ftp://127.0.0.1:9/w', not an http.s. URL") as caught:
        checkpoints.download("tiny", progress=False)
    assert "\n" not in str(caught.value)
    assert checkpoints.download("tiny", progress=False, urls=(file_server.url + "/w",)).read_bytes() == state_dict_bytes


@pytest.mark.parametrize("content", [
    "[" * 100000 + "]" * 100000, "[]", '{"tiny": 5}', '{"tiny": {"sha256": "x", "size": 1}}',
    '{"tiny": {"sha256": "' + "a" * 64 + '", "size": -1}}', b"\xff\xfe",
])
def test_a_damaged_checksums_file_is_one_line_and_a_fresh_one_is_recorded(sgsim_home, file_server, test_manifest, state_dict_bytes,
                                                                          content):
    file_server.files["/w"] = state_dict_bytes
    test_manifest([_entry(file_server, "/w", "torch-state-dict")])
    checksums = sgsim_home / "weights" / "checksums.json"
    checksums.parent.mkdir(parents=True)
    checksums.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(WeightsError, match=r"checksums.json is corrupt.*delete it and run `sgsim weights verify`") as caught:
        checkpoints.download("tiny", progress=False)
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in checksums.parent.iterdir()) == ["checksums.json"]  # nothing fetched or placed
    checksums.unlink()
    checkpoints.download("tiny", progress=False)
    assert checkpoints.verify("tiny").status == "ok"
