"""Downloading, importing and verifying weights against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import pickle
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import checkpoints
from checkpoints.errors import MissingWeightsError, WeightsError
from checkpoints.containers import sniff_container


def _entry(server, name="tiny", path="/tiny.pt", **fields) -> dict:
    return {"name": name, "filename": f"{name}.pt", "urls": [server.url + path], "format": "torch-state-dict", "kind": "generator", **fields}


def test_download_places_file_and_records_checksum(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    test_manifest([_entry(file_server)])
    path = checkpoints.download("tiny", progress=False)
    assert path == checkpoints.resolve("tiny") == sgsim_home / "weights" / "tiny.pt"
    assert path.read_bytes() == state_dict_bytes
    assert not path.with_name("tiny.pt.part").exists()
    recorded = json.loads((sgsim_home / "weights" / "checksums.json").read_text())
    assert recorded["tiny"] == {"sha256": hashlib.sha256(state_dict_bytes).hexdigest(), "size": len(state_dict_bytes)}
    assert torch.load(path, weights_only=True)["fc.weight"].shape == (320, 320)


def test_interrupted_transfer_resumes_with_range(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    file_server.cut_once.add("/tiny.pt")
    test_manifest([_entry(file_server)])
    path = checkpoints.download("tiny", progress=False)
    assert path.read_bytes() == state_dict_bytes
    half = len(state_dict_bytes) // 2
    assert file_server.requests == [("/tiny.pt", None), ("/tiny.pt", f"bytes={half}-")]


def test_leftover_part_is_resumed(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    test_manifest([_entry(file_server, sha256=hashlib.sha256(state_dict_bytes).hexdigest())])
    part = sgsim_home / "weights" / "tiny.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(state_dict_bytes[:1000])
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes
    assert file_server.requests == [("/tiny.pt", "bytes=1000-")]


def test_complete_part_is_checked_not_fetched_again(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    test_manifest([_entry(file_server)])
    part = sgsim_home / "weights" / "tiny.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(state_dict_bytes)
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes
    assert file_server.requests == [("/tiny.pt", f"bytes={len(state_dict_bytes)}-")]


def test_longer_part_is_discarded(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    test_manifest([_entry(file_server)])
    part = sgsim_home / "weights" / "tiny.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(state_dict_bytes + b"junk")
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes
    assert [r for _, r in file_server.requests] == [f"bytes={len(state_dict_bytes) + 4}-", None]


def test_server_ignoring_range_restarts(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    file_server.ignore_range.add("/tiny.pt")
    test_manifest([_entry(file_server)])
    part = sgsim_home / "weights" / "tiny.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes


def test_sha_mismatch_is_rejected(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/tiny.pt"] = state_dict_bytes
    test_manifest([_entry(file_server, sha256="0" * 64)])
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        checkpoints.download("tiny", progress=False)
    assert not (sgsim_home / "weights" / "tiny.pt").exists()
    assert not (sgsim_home / "weights" / "tiny.pt.part").exists()
    with pytest.raises(MissingWeightsError):
        checkpoints.resolve("tiny")


def test_html_page_instead_of_weights_is_rejected(sgsim_home, file_server, test_manifest):
    file_server.files["/tiny.pt"] = b"<!DOCTYPE html><html>quota exceeded</html>"
    test_manifest([_entry(file_server)])
    with pytest.raises(WeightsError, match="match no weights container"):
        checkpoints.download("tiny", progress=False)
    assert not (sgsim_home / "weights" / "tiny.pt").exists()


def test_404_names_the_url_and_the_import_route(sgsim_home, file_server, test_manifest):
    test_manifest([_entry(file_server, path="/gone.pt")])
    with pytest.raises(WeightsError) as info:
        checkpoints.download("tiny", progress=False)
    message = str(info.value)
    assert f"{file_server.url}/gone.pt: HTTP 404" in message
    assert "sgsim weights import FILE --name tiny" in message


def test_mirrors_are_tried_in_order(sgsim_home, file_server, test_manifest, state_dict_bytes):
    file_server.files["/mirror.pt"] = state_dict_bytes
    test_manifest([_entry(file_server, urls=[file_server.url + "/gone.pt", file_server.url + "/mirror.pt"])])
    assert checkpoints.download("tiny", progress=False).read_bytes() == state_dict_bytes
    assert [p for p, _ in file_server.requests] == ["/gone.pt", "/mirror.pt"]


def test_offline_fails_fast(sgsim_home, test_manifest, network_log):
    with socket.socket() as probe:  # a port nobody listens on: connection refused, like a machine without network
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    test_manifest([{"name": "tiny", "filename": "tiny.pt", "urls": [f"http://127.0.0.1:{port}/tiny.pt"],
                    "format": "torch-state-dict", "kind": "generator"}])
    with pytest.raises(WeightsError, match="refused the connection"):
        checkpoints.download("tiny", progress=False)
    assert [address for address, _ in network_log.connections] == [("127.0.0.1", port)]  # one attempt, no retries
    assert network_log.sleeps == []  # and no back-off


def test_silent_server_times_out_quickly(sgsim_home, test_manifest, network_log):
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        test_manifest([{"name": "tiny", "filename": "tiny.pt", "urls": [f"http://127.0.0.1:{port}/tiny.pt"],
                        "format": "torch-state-dict", "kind": "generator"}])
        with pytest.raises(WeightsError, match=r"no answer from 127\.0\.0\.1 within 0\.3 s"):
            checkpoints.download("tiny", progress=False, timeout=0.3)
    # one connection, whose socket carries the 0.3 s timeout (it bounds the wait for an answer), and no back-off
    assert network_log.connections == [(("127.0.0.1", port), 0.3)] and network_log.sleeps == []


def test_disk_full_keeps_the_part_and_says_how_much(sgsim_home, file_server, test_manifest, state_dict_bytes, monkeypatch):
    file_server.files["/tiny.pt"] = state_dict_bytes
    test_manifest([_entry(file_server)])
    real_open = Path.open

    class FullDisk(io.RawIOBase):
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.file.close()

    def open_part(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return FullDisk(handle) if self.name.endswith(".part") else handle

    monkeypatch.setattr(Path, "open", open_part)
    with pytest.raises(WeightsError, match=r"disk full .*MiB more space is needed.*are kept and the download resumes"):
        checkpoints.download("tiny", progress=False)
    assert (sgsim_home / "weights" / "tiny.pt.part").stat().st_size == 100


@pytest.mark.parametrize(
    ("container", "write"),
    [
        ("torch-zip", lambda p: torch.save({"w": torch.ones(2)}, p)),
        ("torch-legacy", lambda p: torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)),
        ("torchscript", lambda p: torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p)),
        ("safetensors", lambda p: save_file({"w": torch.ones(2)}, p)),
        ("pickle", lambda p: p.write_bytes(pickle.dumps({"G_ema": [1, 2]}, protocol=4))),
        ("unknown", lambda p: p.write_bytes(b"<html></html>")),
    ],
)
def test_container_is_recognised_from_content(tmp_path, container, write):
    path = tmp_path / "weights.bin"  # the suffix says nothing: only the bytes count
    write(path)
    assert sniff_container(path) == container


def test_import_checks_format_then_copies(sgsim_home, tmp_path, test_manifest, file_server):
    test_manifest([_entry(file_server), {**_entry(file_server, name="net"), "format": "nvidia-pickle"}])
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"G_ema": 1}, protocol=4))
    with pytest.raises(WeightsError, match="bytes are a pickle file, expected torch-zip or torch-legacy"):
        checkpoints.import_file(wrong, "tiny")
    assert not (sgsim_home / "weights" / "tiny.pt").exists()

    good = tmp_path / "downloaded elsewhere.pt"
    torch.save({"w": torch.arange(3.0)}, good)
    path = checkpoints.import_file(good, "tiny")
    assert path == checkpoints.resolve("tiny") and path.read_bytes() == good.read_bytes()
    assert checkpoints.import_file(wrong, "net").read_bytes() == wrong.read_bytes()


def test_import_rejects_a_file_with_the_wrong_sha(sgsim_home, tmp_path, test_manifest, file_server):
    test_manifest([_entry(file_server, sha256="f" * 64)])
    good = tmp_path / "tiny.pt"
    torch.save({"w": torch.ones(1)}, good)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        checkpoints.import_file(good, "tiny")
    assert good.exists(), "a rejected import must not delete the user's file"
    assert not (sgsim_home / "weights" / "tiny.pt").exists()


def test_verify_records_then_detects_a_change(sgsim_home, tmp_path, test_manifest, file_server):
    test_manifest([_entry(file_server)])
    source = tmp_path / "tiny.pt"
    torch.save({"w": torch.ones(4)}, source)
    path = checkpoints.import_file(source, "tiny")
    assert checkpoints.verify("tiny").status == "ok"
    (sgsim_home / "weights" / "checksums.json").unlink()
    assert checkpoints.verify("tiny").status == "recorded"
    assert checkpoints.verify("tiny").status == "ok"
    with path.open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match="has changed or is damaged.*sgsim weights download tiny"):
        checkpoints.verify("tiny")


def test_verify_of_a_missing_file_says_how_to_get_it(sgsim_home, test_manifest, file_server):
    test_manifest([_entry(file_server)])
    with pytest.raises(MissingWeightsError, match="sgsim weights download tiny"):
        checkpoints.verify("tiny")
