"""Check a weights file against the container(s) its manifest format allows, and that it is complete."""

from __future__ import annotations

from pathlib import Path

from checkpoints.containers import UNKNOWN, ContainerError, check_complete, sniff_container
from checkpoints.errors import WeightsError
from checkpoints.manifest import formats


def check_format(path: Path, expected: str, what: str) -> None:
    """Raise WeightsError unless `path` is a whole file in a container the manifest format `expected` allows."""
    allowed = formats()[expected]
    found = sniff_container(path)
    if found not in allowed:
        seen = "match no weights container (an HTML error page or a truncated file?)" if found == UNKNOWN else f"are a {found} file"
        raise WeightsError(
            f"{path} is not the {expected} file {what} expects: its bytes {seen}, "
            f"expected {' or '.join(allowed)}; check that you picked the right file"
        )
    try:
        check_complete(path, found)
    except ContainerError as error:
        raise WeightsError(f"{path} is an incomplete or corrupt {found} file: {error}") from None
