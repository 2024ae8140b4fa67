"""Fixtures shared by the whole suite: the real audio in tests/data and seeded random weights."""

from __future__ import annotations

import os
import shutil
import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

BROWSER_REQUIRED = os.environ.get("SGSIM_REQUIRE_BROWSER") == "1"  # CI: a missing browser or demo extra fails, not skips
BROWSER_INSTALL = "pip install -e '.[test,demo]' and apt-get install chromium"
# Real recordings kept in the repository (sources and licences in each folder's SOURCES.md).
TEST_DATA = Path(__file__).resolve().parent / "data"


def seeded_state_dict(template: dict[str, torch.Tensor], seed: int, pool: int | None = None) -> dict[str, torch.Tensor]:
    """Random weights for a state dict, each tensor drawn from a generator seeded by (seed, key).

    The draw depends only on the key, shape and seed, never on module order or init code, so a
    reference implementation run elsewhere and our own model get bit-identical weights.
    Weights are scaled by 1/sqrt(fan_in) so deep nets stay finite; batch-norm statistics stay valid.
    With `pool`, each tensor repeats its key's first `pool` values instead of drawing every one: the same
    recipe, fast enough for networks of hundreds of millions of weights.
    """
    out = {}
    for key, value in template.items():
        gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        noise = torch.randn(value.shape if pool is None else (min(pool, max(1, value.numel())),), generator=gen,
                            dtype=torch.float64)
        if key.endswith("running_var"):
            tensor = 1.0 + 0.1 * noise.abs()
        elif key.endswith(("running_mean", "bias")) or value.dim() <= 1:
            tensor = 0.1 * noise + (1.0 if key.endswith(("bn.weight", "bn1.weight", "bn2.weight", "bn3.weight")) else 0.0)
        else:
            fan_in = max(1, value[0].numel())
            tensor = noise / fan_in**0.5
        tensor = tensor.to(value.dtype)
        if pool is not None:
            tensor = tensor.repeat(-(-value.numel() // tensor.numel()))[: value.numel()].reshape(value.shape)
        out[key] = tensor
    return out


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The suite's networks are tiny: on 2 cores extra threads only spin, and one thread fixes the reduction order
    that the bit-for-bit tests (seeded edits, resumed training) compare."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real recordings: `audio/` (the paper's eight demo sounds) and `esc50-mini/` (ESC-50's layout)."""
    return TEST_DATA


@dataclass
class NetworkLog:
    """What a test's code did on the network and with the clock: checked instead of timing it."""

    connections: list[tuple[object, float | None]] = field(default_factory=list)  # (address, socket timeout in s)
    sleeps: list[float] = field(default_factory=list)  # seconds passed to time.sleep


@pytest.fixture()
def network_log(monkeypatch) -> NetworkLog:
    """Records every socket connection attempt (which still happens) and every time.sleep (which returns at once).

    "Fails fast" then means one attempt with the intended timeout and no waiting, whatever the machine's load."""
    log = NetworkLog()
    connect = socket.socket.connect

    def recording_connect(sock: socket.socket, address: object) -> None:
        log.connections.append((address, sock.gettimeout()))
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    monkeypatch.setattr(time, "sleep", log.sleeps.append)
    return log


@pytest.fixture(scope="session")
def random_weights() -> Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]:
    """The seeded_state_dict function, for tests that build networks in their real formats."""
    return seeded_state_dict


@pytest.fixture(scope="session")
def psnr() -> Callable[[torch.Tensor, torch.Tensor], float]:
    """sgsim's image_psnr, for the precision tests that bound how far a faster path's images are from fp32's."""
    from sgsim.editing.precision import image_psnr

    return image_psnr


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """pick() -> a TCP port on 127.0.0.1 that was free a moment ago (for servers and torchrun the tests start)."""
    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    return pick


@pytest.fixture(scope="session")
def one_error_line() -> Callable[..., str]:
    """check(result) -> the single 'Error: ...' line of a failed CliRunner run, which printed no traceback."""
    def check(result) -> str:
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code != 0 and len(lines) == 1 and "Traceback" not in result.output, result.output
        return lines[0]

    return check


@pytest.fixture(scope="session")
def optional_import() -> Callable[[str], object]:
    """needed(module) -> the module, or a skip (a failure under SGSIM_REQUIRE_BROWSER=1) saying how to install it."""
    def needed(module: str):
        try:
            return __import__(module)
        except ImportError:
            if BROWSER_REQUIRED:
                raise
            pytest.skip(f"{module} is not installed ({BROWSER_INSTALL})")

    return needed


@pytest.fixture(scope="module")
def chromium(optional_import) -> Iterator:
    """Headless Chromium from the system packages, driven by Playwright (never Playwright's own browser download)."""
    optional_import("playwright")
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if BROWSER_REQUIRED:
            pytest.fail(f"no chromium on PATH ({BROWSER_INSTALL})")
        pytest.skip(f"no chromium on PATH ({BROWSER_INSTALL})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
