"""Fixtures for the weights tests: a private cache, a manifest with test entries, and a real local HTTP server."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from checkpoints import manifest


@pytest.fixture
def sgsim_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SGSIM_HOME for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("SGSIM_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def state_dict_bytes() -> bytes:
    """A real torch.save zip of a small state dict, large enough (~400 KB) to be cut in the middle."""
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.randn(320, 320, generator=torch.Generator().manual_seed(0))}, buffer)
    return buffer.getvalue()


@dataclass
class FileServer:
    """A local HTTP server: `files` maps a path to bytes; `requests` logs (path, Range header) in order."""

    url: str
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_once: set[str] = field(default_factory=set)  # paths whose next GET stops after half the body
    ignore_range: set[str] = field(default_factory=set)  # paths served whole even when a Range is asked
    cut_without_length: set[str] = field(default_factory=set)  # paths sent without Content-Length, cut at half
    trickle: set[str] = field(default_factory=set)  # paths sent one byte every 0.5 s
    redirects: dict[str, str] = field(default_factory=dict)  # path -> the path a 302 sends the client to
    bad_length: set[str] = field(default_factory=set)  # paths sent whole with "Content-Length: many"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            path, requested = self.path, self.headers.get("Range")
            server.requests.append((path, requested))
            if path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = server.files.get(path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            if requested and path not in server.ignore_range:
                start = int(requested.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            if path in server.bad_length:
                self.send_header("Content-Length", "many")
                self.end_headers()
                self.wfile.write(body[start:])
                self.close_connection = True
                return
            if path in server.cut_without_length:  # the end of the connection is all that ends the body
                self.end_headers()
                self.wfile.write(body[start : start + (len(body) - start) // 2])
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if path in server.trickle:
                try:
                    for index in range(start, len(body)):
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                        time.sleep(0.5)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                    pass
                return
            if path in server.cut_once:
                server.cut_once.discard(path)
                self.wfile.write(body[start : start + (len(body) - start) // 2])
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def file_server():
    """A real HTTP server on 127.0.0.1 in a thread, with Range support and a mid-transfer cut mode."""
    state = FileServer(url="", files={})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def test_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Replace the manifest with the real formats, kinds and domains plus the given entries; returns a function(entries)."""
    real = json.loads(manifest.MANIFEST_PATH.read_text(encoding="utf-8"))

    def install(weights: list[dict]) -> None:
        path = tmp_path / "manifest.json"
        defaults = {"size": None, "sha256": None, "licence": "test", "description": "test file"}
        generator = {"domain": "scenes"}  # a manifest generator says what it draws
        entries = [defaults | (generator if w.get("kind") == "generator" else {}) | w for w in weights]
        path.write_text(json.dumps({"formats": real["formats"], "kinds": real["kinds"], "domains": real["domains"], "weights": entries}))
        monkeypatch.setattr(manifest, "MANIFEST_PATH", path)
        manifest._load.cache_clear()

    yield install
    manifest._load.cache_clear()
