"""The local weights cache: where files live and how a name or path becomes a file. Never touches the network."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from checkpoints.errors import MissingWeightsError, WeightsError
from checkpoints.manifest import WeightsEntry, entry, is_known

CHECKSUMS_FILENAME = "checksums.json"


def cache_dir() -> Path:
    """The toolkit's home: `$SGSIM_HOME`, else `~/.cache/sgsim`. Weights live in its `weights/` folder."""
    home = os.environ.get("SGSIM_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "sgsim"


def weights_dir() -> Path:
    """The folder that holds downloaded and imported weights files."""
    return cache_dir() / "weights"


def cached_path(item: WeightsEntry) -> Path:
    """Where the cache keeps `item`'s file (whether or not it is there yet)."""
    return weights_dir() / item.filename


def resolve(name_or_path: str | os.PathLike) -> Path:
    """An existing file path as is, or the cached file of a manifest name; otherwise a MissingWeightsError that says how to get it."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if not is_known(name) and (path.suffix or os.sep in name or "/" in name):
        raise WeightsError(f"no such weights file: {path}; pass an existing file or a name from `sgsim weights list`")
    item = entry(name)  # an unknown name raises here, with close names listed
    target = cached_path(item)
    if target.is_file():
        return target
    raise MissingWeightsError(
        f"the {name} weights ({item.filename}) are not in the cache {weights_dir()}: "
        f"run `sgsim weights download {name}` (fetches {item.urls[0]}), or download that URL elsewhere "
        f"and run `sgsim weights import FILE --name {name}`"
    )


def recorded_checksums() -> dict[str, dict]:
    """The sha256 and size the cache recorded at each name's first verified download or import."""
    path = weights_dir() / CHECKSUMS_FILENAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} is corrupt ({exc}); delete it and run `sgsim weights verify` to record checksums again") from None


def record_checksum(name: str, sha256: str, size: int) -> None:
    """Remember a file's sha256 and size so later verifies detect a changed or damaged file."""
    table = recorded_checksums()
    table[name] = {"sha256": sha256, "size": size}
    write_text_atomic(weights_dir() / CHECKSUMS_FILENAME, json.dumps(table, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
