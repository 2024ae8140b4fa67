"""Fetch, import and verify weights files: resumable streamed downloads, format and checksum checks, atomic placement."""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from checkpoints.cache import cache_dir, cached_path, readable_by_all, record_checksum, recorded_checksums, resolve
from checkpoints.errors import WeightsError
from checkpoints.formats import check_format
from checkpoints.manifest import WeightsEntry, entry

DEFAULT_TIMEOUT_S = 10.0  # per connect and per read: an offline user hears within seconds, not minutes
DEFAULT_DEADLINE_S = 3600.0  # a whole transfer from one URL; a server trickling bytes must not hold the user forever
MIRRORS_FILENAME = "mirrors.json"  # in the cache dir: {"name": ["url", ...]} tried before the manifest's URLs
MAX_RESUMES = 3  # a transfer that breaks off is resumed from its .part this many times before giving up on a mirror
MAX_UNKNOWN_SIZE = 4 << 30  # bytes a file may reach when the manifest does not know its size (the largest official one is < 1 GiB)
MIRROR_SCHEMES = ("http", "https")  # what mirrors.json and redirects may point at; `urls=` may also name a file:// copy
_CHUNK = 1 << 20
_USER_AGENT = "sgsim-weights/0.1"


@dataclass(frozen=True)
class StallRule:
    """Give up on a URL that sends fewer than `min_bytes_per_s` on average over `window_s` seconds (curl's
    --speed-limit/--speed-time), so a trickling server costs a minute, not the whole deadline."""

    min_bytes_per_s: float = 1024.0
    window_s: float = 60.0


DEFAULT_STALL = StallRule()


class _SourceFailed(Exception):
    """A URL or file did not give the right bytes; for a download, the next mirror may."""


class _RangeRejected(Exception):
    """HTTP 416: the .part is not shorter than the server's file, whose size (if sent) is `total`."""

    def __init__(self, total: int | None):
        super().__init__(total)
        self.total = total


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing a cached file."""

    name: str
    path: Path
    sha256: str
    size: int
    status: str  # "ok": matches the manifest or the recorded checksum; "recorded": first hash, now remembered
    forced: str | None = None  # why the file is not what its name promises, when it was imported with --force


def sha256_file(path: Path) -> str:
    """The lowercase hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def mirrors() -> dict[str, list[str]]:
    """Extra URLs per manifest name from `$SGSIM_HOME/mirrors.json` (a mirror or a local server), tried first."""
    path = cache_dir() / MIRRORS_FILENAME
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise WeightsError(f"{path} is not valid JSON ({reason}); it should map weights names to lists of URLs") from None
    if not (isinstance(table, dict) and all(isinstance(urls, list) and all(isinstance(url, str) for url in urls)
                                            for urls in table.values())):
        raise WeightsError(f"{path} should map weights names to lists of URLs, e.g. {{\"ffhq\": [\"http://host/ffhq.pkl\"]}}")
    for name, urls in table.items():
        for url in urls:
            if urlsplit(url).scheme.lower() not in MIRROR_SCHEMES:
                raise WeightsError(f"{path}: the mirror {url[:200]!r} for {name[:100]!r} is not an http(s) URL; for a file on "
                                   f"this machine run `sgsim weights import FILE --name NAME` instead")
    return table


def download(name: str, *, force: bool = False, progress: bool = True, timeout: float = DEFAULT_TIMEOUT_S,
             urls: tuple[str, ...] | None = None, deadline: float = DEFAULT_DEADLINE_S,
             stall: StallRule = DEFAULT_STALL) -> Path:
    """Fetch the manifest file `name` into the cache (mirrors in order, resuming a .part) and return its path.

    `urls` replaces where to fetch from (a mirror or a local server; the manifest's size and sha256 still apply);
    otherwise `$SGSIM_HOME/mirrors.json` URLs come before the manifest's. `deadline` bounds each URL's transfer and
    `stall` gives up on a URL sooner when it sends too slowly; either way the next URL resumes the .part.
    """
    item = entry(name)
    sources = tuple(urls) if urls else (*mirrors().get(name, ()), *item.urls)
    target = cached_path(item)
    if target.is_file() and not force:
        return target
    if item.sha256 is None:
        recorded_checksums()  # a damaged table fails here, not after the file is placed without its checksum
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    failures = []
    for url in sources:
        try:
            _fetch(url, part, item, timeout=timeout, progress=progress, watch=_Watch(deadline, stall))
            sha256 = _check_file(part, item, source=url)
        except _SourceFailed as exc:
            failures.append(f"{url}: {exc}")
            continue
        os.replace(part, target)
        if item.sha256 is None:
            record_checksum(name, sha256, target.stat().st_size)
        return target
    raise WeightsError(
        f"could not download {name} ({item.filename}): {'; '.join(failures)}. If this machine is offline, "
        f"download the file elsewhere and run `sgsim weights import FILE --name {name}`"
    )


def import_file(path: str | os.PathLike, name: str, *, forced: str | None = None) -> Path:
    """Copy a file fetched by other means into the cache as `name`, after checking its format and checksum.

    `forced` records why the file is kept although it is not what `name` promises (verify reports it)."""
    item = entry(name)
    source = Path(path).expanduser()
    if not source.is_file():
        raise WeightsError(f"no such file to import: {source}")
    if item.sha256 is None:
        recorded_checksums()  # a damaged table fails here, not after the file is placed
    try:
        sha256 = _check_file(source, item, source=str(source))
    except _SourceFailed as exc:
        raise WeightsError(f"cannot import {source} as {name}: {exc}") from None
    target = cached_path(item)
    if not (target.is_file() and target.samefile(source)):
        _copy_atomic(source, target)
    if item.sha256 is None or forced or name in recorded_checksums():  # (a record also drops an earlier forced note)
        record_checksum(name, sha256, target.stat().st_size, forced)
    return target


def verify(name: str) -> VerifyResult:
    """Check the cached file `name` is whole, then re-hash it against the manifest or the checksum recorded at
    first download or import."""
    item = entry(name)
    path = resolve(name)  # raises the actionable "not in the cache" error
    try:  # a file cut short before downloads checked structure may carry a recorded checksum of its own
        check_format(path, item.format, what=f"the {name} entry")
    except WeightsError as exc:
        raise WeightsError(f"{exc}; delete it and run `sgsim weights download {name}` again") from None
    sha256, size = sha256_file(path), path.stat().st_size
    recorded = recorded_checksums().get(name, {})
    expected = item.sha256 or recorded.get("sha256")
    if expected is None:
        record_checksum(name, sha256, size)
        return VerifyResult(name, path, sha256, size, "recorded")
    if sha256 != expected or (item.size is not None and size != item.size):
        origin = "the manifest" if item.sha256 else "the checksum recorded when it was first fetched"
        raise WeightsError(
            f"{path} has changed or is damaged: sha256 {sha256} ({size} bytes) differs from {origin} ({expected}); "
            f"delete it and run `sgsim weights download {name}` again"
        )
    return VerifyResult(name, path, sha256, size, "ok", recorded.get("forced"))


def _check_file(path: Path, item: WeightsEntry, source: str) -> str:
    """Check a fetched or imported file's format, size and sha256 against `item`; return its sha256.

    A failed check deletes a .part (its bytes are wrong, resuming cannot fix them) and raises _SourceFailed.
    """
    try:
        check_format(path, item.format, what=f"the {item.name} entry")
        size = path.stat().st_size
        if item.size is not None and size != item.size:
            raise WeightsError(f"{path} has {size} bytes, the manifest says {item.size}")
        sha256 = sha256_file(path)
        if item.sha256 is not None and sha256 != item.sha256:
            raise WeightsError(f"sha256 mismatch: got {sha256}, the manifest says {item.sha256}")
    except WeightsError as exc:
        if path.name.endswith(".part"):
            path.unlink(missing_ok=True)
        raise _SourceFailed(str(exc)) from None
    return sha256


class _Watch:
    """The deadline and the stall rule of one URL's transfer (across its resumes), checked after every read."""

    def __init__(self, deadline: float, stall: StallRule):
        self.deadline, self.stall = deadline, stall
        self.give_up_at = time.monotonic() + deadline
        self.window_start, self.window_bytes = time.monotonic(), 0

    def too_slow(self, received: int) -> str | None:
        """Count `received` new bytes; the reason to give up on this URL, or None."""
        now = time.monotonic()
        if now > self.give_up_at:
            return f"the transfer did not finish within the {self.deadline:g} s deadline (a stalled or very slow server)"
        self.window_bytes += received
        if now - self.window_start < self.stall.window_s:
            return None
        if self.window_bytes < self.stall.min_bytes_per_s * self.stall.window_s:
            return (f"the server sent {self.window_bytes} bytes in {now - self.window_start:.3g} s, below the stall limit "
                    f"of {self.stall.min_bytes_per_s:g} bytes/s over {self.stall.window_s:g} s")
        self.window_start, self.window_bytes = now, 0
        return None


def _fetch(url: str, part: Path, item: WeightsEntry, *, timeout: float, progress: bool, watch: _Watch) -> None:
    """Stream `url` into `part`, resuming what is already there with an HTTP Range request, while `watch` allows."""
    for _ in range(MAX_RESUMES + 1):
        offset = part.stat().st_size if part.exists() else 0
        if item.size is not None and offset >= item.size:
            if offset == item.size:
                return
            part.unlink()
            offset = 0
        try:
            response = _open(url, offset, timeout)
        except _RangeRejected as exc:
            if exc.total == offset:  # fetched whole by an earlier run that stopped before checking it
                return
            part.unlink(missing_ok=True)
            continue
        with response:
            start, total = _body_span(response, offset)
            if start != offset:  # the server ignored or misread the Range: restart from byte 0
                part.unlink(missing_ok=True)
                if start != 0:
                    continue
            if total is not None and total > _size_bound(item):
                part.unlink(missing_ok=True)
                raise _SourceFailed(_too_big(total, item))
            if _copy_body(response, part, start, total, item, progress, watch) and (total is None or part.stat().st_size >= total):
                return
    raise _SourceFailed(
        f"the transfer broke off {MAX_RESUMES + 1} times; run the download again to resume from the "
        f"{part.stat().st_size if part.exists() else 0} bytes kept in {part}"
    )


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to an http(s) URL: urllib would also follow one to ftp://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in MIRROR_SCHEMES:
            raise _SourceFailed(f"HTTP {code}: the server redirects to {newurl[:200]!r}, not an http(s) URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpRedirectsOnly)


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Send the GET, with a Range from `offset` when resuming; raise _RangeRejected on HTTP 416."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = exc.headers.get("Content-Range", "").rpartition("/")[2]  # "bytes */TOTAL"
            raise _RangeRejected(int(total) if total.isdigit() else None) from None
        raise _SourceFailed(_http_message(exc.code, exc.reason)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _SourceFailed(_network_message(exc, url, timeout)) from None


def _body_span(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """(first byte the body holds, total file size or None) from the status and Content-Range/Content-Length (as
    http.client parsed it: None when missing, negative or not a number)."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
        try:
            span, total = content_range.split(" ", 1)[1].split("/")
            start = int(span.split("-")[0])
            return start, (None if total == "*" else int(total))
        except (IndexError, ValueError):
            return -1, None
    return 0, getattr(response, "length", None)


def _copy_body(response: http.client.HTTPResponse, part: Path, start: int, total: int | None, item: WeightsEntry,
               progress: bool, watch: _Watch) -> bool:
    """Append the body to `part` (truncating it first when `start` is 0); False when the transfer broke off.

    read1 returns what one socket read brings, so a server that trickles bytes still meets the deadline and the stall
    rule; a body growing past the manifest's size (or MAX_UNKNOWN_SIZE) is refused and its .part deleted.
    """
    label, max_size = item.name, _size_bound(item)
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress)
    try:
        with part.open("ab" if start else "wb") as out, bar:
            size, received = start, 0
            while True:
                reason = watch.too_slow(received)
                if reason:
                    raise _SourceFailed(f"{reason}; the {size} bytes fetched are kept in {part}: run the download again to resume")
                try:
                    chunk = response.read1(_CHUNK)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError):
                    return False
                if not chunk:
                    return True
                received = len(chunk)
                size += received
                if size > max_size:
                    part.unlink()
                    raise _SourceFailed(_too_big(size, item))
                out.write(chunk)
                bar.update(received)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        have = part.stat().st_size if part.exists() else 0
        need = f"{(total - have) / 2**20:.0f} MiB more" if total is not None else "more"
        free = shutil.disk_usage(part.parent).free
        raise WeightsError(
            f"disk full while writing {part}: {need} space is needed ({free / 2**20:.0f} MiB free). Free some space "
            f"(or point SGSIM_HOME at a bigger disk) and run `sgsim weights download {label}` again: "
            f"the {have} bytes already fetched are kept and the download resumes"
        ) from None


def _size_bound(item: WeightsEntry) -> int:
    """The most bytes a source of `item` may send: the manifest's size, or MAX_UNKNOWN_SIZE when it is not known."""
    return item.size if item.size is not None else MAX_UNKNOWN_SIZE


def _too_big(size: int, item: WeightsEntry) -> str:
    """Why a body of (at least) `size` bytes is not the file `item`."""
    bound = f"the manifest says {item.size}" if item.size is not None else f"more than the {MAX_UNKNOWN_SIZE / 2**30:g} GiB any weights file may have"
    return f"the source sends {size} bytes or more, {bound}: not this file"


def _http_message(code: int, reason: str) -> str:
    """A user-facing reading of an HTTP error status; the server's own reason phrase is cut to one short line."""
    if 300 <= code < 400:  # urllib's own multi-line text for a loop or too many hops
        return f"HTTP {code}: the server redirects in a loop or too many times; try another URL"
    reason = "".join(ch for ch in " ".join(str(reason).split()) if ch.isprintable())[:100]
    meaning = {
        403: "the server refuses access (an expired link, or a host that wants a login or blocks scripts)",
        404: "the file is not at this address (moved or removed)",
        410: "the file was removed from this address",
    }.get(code, "the server could not deliver the file")
    return f"HTTP {code} {reason}: {meaning}"


def _network_message(exc: BaseException, url: str, timeout: float) -> str:
    """A user-facing reading of a failure to reach a host at all."""
    host = urlsplit(url).hostname or url
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve {host} (no network or no DNS: is this machine offline?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection (offline, a proxy or firewall, or the server is down)"
    if isinstance(reason, TimeoutError):
        return f"no answer from {host} within {timeout:g} s (offline, or a very slow network)"
    return f"cannot reach {host}: {reason}"


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a temp file in the target's folder and os.replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        readable_by_all(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
