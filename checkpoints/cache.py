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


def resolve_all(names_or_paths: list[str | os.PathLike]) -> list[Path]:
    """resolve() for several files at once; when some are missing, one MissingWeightsError lists every one of them
    with its URL and import command, and a single download command for them all (not one at a time)."""
    paths, missing = [], []
    for name in names_or_paths:
        try:
            paths.append(resolve(name))
        except MissingWeightsError:
            missing.append(entry(str(name)))
    if not missing:
        return paths
    if len(missing) == 1:
        resolve(missing[0].name)
    listed = "; ".join(f"{item.name} ({item.filename}, {item.urls[0]}: `sgsim weights import FILE --name {item.name}`)"
                       for item in missing)
    raise MissingWeightsError(
        f"{len(missing)} weights files are not in the cache {weights_dir()}: {listed}. "
        f"Run `sgsim weights download {' '.join(item.name for item in missing)}`, or download each URL elsewhere and import it"
    )


def recorded_checksums() -> dict[str, dict]:
    """The sha256 and size the cache recorded at each name's first verified download or import."""
    path = weights_dir() / CHECKSUMS_FILENAME
    if not path.is_file():
        return {}
    advice = "delete it and run `sgsim weights verify` to record checksums again"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise WeightsError(f"{path} is corrupt ({reason}); {advice}") from None
    if not (isinstance(table, dict) and all(_is_checksum_record(record) for record in table.values())):
        raise WeightsError(f"{path} is corrupt: it should map names to {{\"sha256\": 64 hex digits, \"size\": bytes}} "
                           f"(and \"forced\": a reason, for a file imported with --force); {advice}")
    return table


def _is_checksum_record(record: object) -> bool:
    """True for {"sha256": 64 lowercase hex digits, "size": a whole number of bytes >= 0} and, for a file imported with
    --force, "forced": why it was kept (at most a line of text)."""
    if not isinstance(record, dict) or not {"sha256", "size"} <= set(record) <= {"sha256", "size", "forced"}:
        return False
    sha256, size, forced = record["sha256"], record["size"], record.get("forced", "")
    return (isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= set("0123456789abcdef")
            and isinstance(size, int) and not isinstance(size, bool) and size >= 0
            and isinstance(forced, str) and len(forced) <= 1000 and "\n" not in forced)


def record_checksum(name: str, sha256: str, size: int, forced: str | None = None) -> None:
    """Remember a file's sha256 and size so later verifies detect a changed or damaged file; `forced` is why the
    file is not what its name promises, when the user imported it anyway (`weights import --force`)."""
    table = recorded_checksums()
    table[name] = {"sha256": sha256, "size": size} | ({"forced": forced} if forced else {})
    write_text_atomic(weights_dir() / CHECKSUMS_FILENAME, json.dumps(table, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        readable_by_all(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def readable_by_all(path: str | os.PathLike) -> None:
    """Give a cache file the mode a plain download would have (0644 less the umask), not mkstemp's 0600: a shared
    cache (one SGSIM_HOME for a lab or a container) must be readable by the other users."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o644 & ~umask)
