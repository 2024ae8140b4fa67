"""Typed access to `manifest.json`, the registry of official weights files (data, not code)."""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from checkpoints.errors import WeightsError

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


@dataclass(frozen=True)
class WeightsEntry:
    """One official weights file: where to get it, how to check it and what it is for."""

    name: str  # short slug users type: `sgsim weights download ffhq`
    filename: str  # file name inside the cache's weights folder
    urls: tuple[str, ...]  # byte-identical mirrors, tried in order
    size: int | None  # bytes; None until the publisher or a verified download tells
    sha256: str | None  # lowercase hex; None when the publisher gives none
    format: str  # one of the manifest's "formats": how the file is laid out on disk
    kind: str  # one of the manifest's "kinds": generator, audio-encoder, clip, lpips, identity
    licence: str
    description: str
    # What the file must hold, checked on import (sgsim.weights_check): a generator's resolution and w_plus_rows,
    # an audio encoder's registry name and embed_dim, a CLIP's clip_model and embed_dim, a helper network's name.
    expects: Mapping[str, Any] = field(default_factory=dict)
    domain: str | None = None  # a generator's: what it draws (one of the manifest's "domains"); None for other kinds


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict[str, tuple[str, ...]], tuple[str, ...], dict[str, WeightsEntry]]:
    """Parse and validate the manifest once: (containers by format, kinds, entries by name)."""
    raw = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    formats = {name: tuple(containers) for name, containers in raw["formats"].items()}
    kinds, domains = tuple(raw["kinds"]), tuple(raw["domains"])
    table: dict[str, WeightsEntry] = {}
    for item in raw["weights"]:
        item = dict(item, urls=tuple(item["urls"]))
        entry = WeightsEntry(**item)
        if entry.name in table:
            raise WeightsError(f"{MANIFEST_PATH}: the name {entry.name!r} appears twice; names must be unique")
        if entry.format not in formats or entry.kind not in kinds:
            raise WeightsError(
                f"{MANIFEST_PATH}: {entry.name} has format {entry.format!r} and kind {entry.kind!r}; "
                f"use one of {tuple(formats)} and one of {kinds}"
            )
        if (entry.kind == "generator") != (entry.domain in domains):
            raise WeightsError(f"{MANIFEST_PATH}: {entry.name} has domain {entry.domain!r}; a generator needs one of {domains}, "
                               f"other kinds none")
        table[entry.name] = entry
    return formats, kinds, table


def formats() -> dict[str, tuple[str, ...]]:
    """Each on-disk format the manifest may name, with the containers a file of that format may be."""
    return dict(_load()[0])


def kinds() -> tuple[str, ...]:
    """The roles a weights file may play."""
    return _load()[1]


def entries() -> list[WeightsEntry]:
    """Every official weights file, in manifest order."""
    return list(_load()[2].values())


def is_known(name: str) -> bool:
    """Whether `name` is a manifest name."""
    return name in _load()[2]


def entry(name: str) -> WeightsEntry:
    """The manifest entry called `name`; an unknown name raises WeightsError listing close names."""
    table = _load()[2]
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise WeightsError(f"unknown weights name {name!r}: {hint}`sgsim weights list` shows all {len(table)} names")
