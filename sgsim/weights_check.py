"""Check that a weights file is what its manifest name promises, with the toolkit's own loaders.

The container check (checkpoints/formats.py) only sees the bytes' layout; a random 256 px generator is a
valid NVIDIA pickle too. Here each kind's loader reads the file (generators on the meta device) and the
facts it finds are compared with the manifest entry's `expects`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import checkpoints
from checkpoints.errors import WeightsError
from checkpoints.formats import check_format

# How each fact reads in a message: "a 256 px generator with 14 W+ rows".
_FACT_WORDS: dict[str, Callable[[Any], str]] = {
    "format": lambda value: f"{value} file",
    "resolution": lambda value: f"{value} px",
    "w_plus_rows": lambda value: f"{value} W+ rows",
    "encoder": lambda value: f"{value} weights",
    "clip_model": lambda value: f"CLIP {value}",
    "embed_dim": lambda value: f"{value}-d embeddings",
    "network": lambda value: f"{value} weights",
}


class WeightsMismatchError(WeightsError):
    """A weights file loads, or fails to load, as something other than what its manifest name promises."""


def _generator_facts(path: Path, expects: dict[str, Any]) -> dict[str, Any]:
    from stylegan2 import CheckpointError
    from stylegan2.loading import describe_generator

    try:
        summary = describe_generator(path)
    except CheckpointError as exc:
        raise WeightsMismatchError(f"it is not a generator this toolkit reads ({exc})") from None
    return {"format": summary.format, "resolution": summary.resolution, "w_plus_rows": summary.w_plus_rows}


def _audio_encoder_facts(path: Path, expects: dict[str, Any]) -> dict[str, Any]:
    from encoders.registry import load_audio_encoder

    name = expects["encoder"]
    return _embedder_facts(lambda: load_audio_encoder(name, checkpoint=path), f"the {name} audio encoder", {"encoder": name})


def _clip_facts(path: Path, expects: dict[str, Any]) -> dict[str, Any]:
    from encoders.clip import load_clip

    name = expects["clip_model"]
    return _embedder_facts(lambda: load_clip(name, pretrained=path), f"CLIP {name}", {"clip_model": name})


def _embedder_facts(load: Callable[[], Any], what: str, names: dict[str, Any]) -> dict[str, Any]:
    """`names` and the embed_dim of the model `load` builds from the file; a file it refuses is `what` it is not."""
    from encoders.errors import EncoderError

    try:
        model = load()
    except EncoderError as exc:
        raise WeightsMismatchError(f"it does not load as {what} ({exc})") from None
    return {**names, "embed_dim": model.embed_dim}


def _network_facts(path: Path, expects: dict[str, Any]) -> dict[str, Any]:
    from sgsim.errors import NetworkFileError
    from sgsim.identity import read_arcface
    from sgsim.lpips import read_lpips

    readers = {"lpips-vgg16": read_lpips, "arcface-ir-se50": read_arcface}
    try:
        readers[expects["network"]](path)
    except NetworkFileError as exc:
        raise WeightsMismatchError(str(exc)) from None
    return {"network": expects["network"]}


# Which loader tells what a file of each manifest kind holds.
_FACTS_BY_KIND: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "generator": _generator_facts,
    "audio-encoder": _audio_encoder_facts,
    "clip": _clip_facts,
    "lpips": _network_facts,
    "identity": _network_facts,
}


def _describe(facts: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(_FACT_WORDS[key](facts[key]) for key in keys)


def mismatch(path: str | os.PathLike, name: str) -> str | None:
    """Why the file at `path` is not the weights `name` promises, in a few words; None when it is."""
    item = checkpoints.entry(name)
    expects = {"format": item.format, **item.expects} if item.kind == "generator" else dict(item.expects)
    if not expects:
        return None
    try:
        found = _FACTS_BY_KIND[item.kind](Path(path), expects)
    except WeightsMismatchError as exc:
        return str(exc)
    differing = [key for key in expects if found.get(key) != expects[key]]
    if not differing:
        return None
    return f"it holds {_describe(found, differing)} where {name} has {_describe(expects, differing)}"


def import_weights(path: str | os.PathLike, name: str, *, force: bool = False) -> Path:
    """Import a file into the cache as `name` once it proves to be what the name promises; `force` keeps a
    file that does not, and the cache records why (`sgsim weights verify` reports it)."""
    check_format(Path(path), checkpoints.entry(name).format, what=f"the {name} entry")  # a web page fails here, plainly
    problem = mismatch(path, name)
    if problem and not force:
        raise WeightsMismatchError(
            f"{path} is not the {name} weights: {problem}; import it under the name that fits, "
            f"or pass --force to keep it as {name} anyway"
        )
    return checkpoints.import_file(path, name, forced=problem)


def verify_weights(name: str) -> checkpoints.VerifyResult:
    """checkpoints.verify, and for a file whose bytes no publisher vouches for (no published sha256) that it holds
    what `name` promises, unless it was imported with --force (the result then says why it was kept)."""
    result = checkpoints.verify(name)
    if checkpoints.entry(name).sha256 is None and result.forced is None:
        problem = mismatch(result.path, name)
        if problem:
            raise WeightsMismatchError(f"{result.path} is not the {name} weights: {problem}; delete it and download "
                                       f"or import the right file (`sgsim weights import FILE --name {name}`)")
    return result
