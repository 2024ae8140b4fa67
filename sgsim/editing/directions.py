"""A sound's direction in W+: one offset learned over many images, saved once, applied to any image in one pass.

The .sgdir file is safetensors (per direction its offset [num_ws, w_dim] and target embedding [embed_dim]) with
one JSON metadata entry saying what each direction was learned with: the generator's architecture and weights
checksum, the encoder and CLIP, the sound, the settings and the held-out measurement. Reading it runs no code.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch

from sgsim.errors import SgsimError, SgsimNotice
from stylegan2.errors import NetworkConfigError
from stylegan2.families import architecture_of, num_ws_of

FORMAT_NAME = "sgsim-direction"
FORMAT_VERSION = 1
METADATA_KEY = "sgsim.directions"  # the safetensors metadata entry holding the JSON
SUFFIX = ".sgdir"
MAX_METADATA_CHARS = 10_000_000  # far above any real record; a hostile header fails fast
MAX_WEIGHT = 100.0  # |weight| of a direction in a combination; 1e300 was inf in float32
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # direction names are file stems and tensor-key prefixes


@dataclass
class SoundDirection:
    """One learned direction: w_edit = w_src + strength * offset, and the record of how it was learned."""

    name: str  # file-name-safe: the sound's stem, or a name given
    offset: torch.Tensor  # [num_ws, w_dim] float32 on the CPU
    target: torch.Tensor  # [embed_dim] the L2-normalised CLIP-space target it was learned toward
    generator: dict  # {"name": manifest name or file, "architecture": G.init_kwargs, "state_sha256": weights checksum}
    encoder: dict = field(default_factory=dict)  # {"name", "state_sha256"} of the audio encoder
    clip: dict = field(default_factory=dict)  # {"name", "state_sha256"} of the CLIP model
    sound: Optional[dict] = None  # {"file": file name, "sha256": of the file} (None: text only, or a waveform)
    text: Optional[str] = None
    settings: dict = field(default_factory=dict)  # every setting of the learning run
    holdout: Optional[dict] = None  # generalisation on held-out seeds (Editor.learn_directions)
    sgsim_version: str = ""

    def save(self, path: Union[str, Path]) -> Path:
        """Write this direction alone to `path` (atomically)."""
        return save_directions(path, [self])

    @staticmethod
    def load(path: Union[str, Path], name: Optional[str] = None) -> "SoundDirection":
        """The direction `name` of a .sgdir file; `name` may be left out when the file holds one."""
        found = load_directions(path)
        if name is None:
            if len(found) != 1:
                raise SgsimError(f"{path} holds {len(found)} directions ({', '.join(found)}); pass name=... to pick one")
            return next(iter(found.values()))
        if name not in found:
            raise SgsimError(f"{path} holds no direction named {name!r}; it holds {', '.join(found)}")
        return found[name]

    @staticmethod
    def from_spec(spec: str) -> "SoundDirection":
        """'FILE' or 'FILE:NAME' (as `sgsim apply --direction` takes it) -> the direction; a path that exists as given
        wins (a colon in a file name)."""
        path, name = Path(spec), None
        if not path.exists() and ":" in spec:
            head, _, tail = spec.rpartition(":")
            path, name = Path(head), tail
        return SoundDirection.load(path, name)

    def record(self) -> dict:
        """The JSON-able metadata of this direction (everything but the tensors)."""
        record = asdict(self)
        del record["offset"], record["target"]
        return record


def architecture(generator) -> dict:
    """A generator's architecture as JSON data (its init kwargs), comparable with a stored one."""
    return json.loads(json.dumps(generator.init_kwargs, sort_keys=True))


def describe_architecture(arch: Mapping) -> str:
    """'1024 px, W+ 18x512, channel_base 32768' style summary of an architecture, for messages."""
    synthesis = arch.get("synthesis_kwargs", {}) if isinstance(arch.get("synthesis_kwargs"), dict) else {}
    resolution = arch.get("img_resolution", "?")
    num_ws = _num_ws(arch) or "?"
    kind = architecture_of(arch) if num_ws != "?" else "?"
    detail = synthesis.get("architecture", "?") if kind == "stylegan2" else kind
    return (f"{resolution} px, W+ {num_ws}x{arch.get('w_dim', '?')}, channel_base {synthesis.get('channel_base', '?')}, "
            f"channel_max {synthesis.get('channel_max', '?')}, {detail}")


def _num_ws(arch: Mapping) -> Optional[int]:
    """The W+ rows of a recorded architecture (StyleGAN2 or StyleGAN3), None when the record is impossible."""
    resolution = arch.get("img_resolution")
    if not isinstance(resolution, int) or resolution < 4:
        return None
    try:
        return num_ws_of(arch)
    except (NetworkConfigError, TypeError, ValueError):
        return None


def shown(recorded: object, limit: int = 120) -> str:
    """A value read from a file, for a message: its repr (control characters escaped), cut to `limit` characters."""
    text = repr(recorded)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_generator(direction: SoundDirection, generator, weights_sha256: Optional[str] = None) -> None:
    """Refuse a direction learned on a generator of another architecture (one line naming both); warn when the
    architecture matches but the weights differ (the offset may mean something else there)."""
    stored = direction.generator.get("architecture")
    current = architecture(generator)
    if stored != current:
        raise SgsimError(f"direction {direction.name!r} was learned on a generator of another architecture "
                         f"({shown(direction.generator.get('name'))}: {describe_architecture(stored or {})}) than this one "
                         f"({describe_architecture(current)}); learn it again on this generator with sgsim direction")
    if weights_sha256 is not None and direction.generator.get("state_sha256") not in (None, weights_sha256):
        warnings.warn(f"direction {direction.name!r} was learned on other weights of this architecture "
                      f"({shown(direction.generator.get('name'))}); it may not mean the same here",
                  category=SgsimNotice, stacklevel=3)


def check_weights(weights: Optional[Sequence[float]], count: int) -> list[float]:
    """One weight per direction as floats (default 1 each), each finite and within +-MAX_WEIGHT."""
    weights = [1.0] * count if weights is None else [float(w) for w in weights]
    if len(weights) != count:
        raise SgsimError(f"{len(weights)} weights for {count} directions: give one weight per direction")
    if not all(math.isfinite(w) and abs(w) <= MAX_WEIGHT for w in weights):
        raise SgsimError(f"direction weights must be numbers from {-MAX_WEIGHT:g} to {MAX_WEIGHT:g}, got {weights}")
    return weights


def combined_offset(directions: Sequence[SoundDirection], weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """sum_j weight_j * offset_j [num_ws, w_dim]: several sounds in one pass (rain + fire)."""
    if not directions:
        raise SgsimError("no direction given: pass at least one SoundDirection")
    weights = check_weights(weights, len(directions))
    shapes = {tuple(d.offset.shape) for d in directions}
    if len(shapes) != 1:
        raise SgsimError(f"the directions have offsets of different shapes {sorted(shapes)}: they were learned on different generators")
    return sum(w * d.offset.float() for w, d in zip(weights, directions))


def strength_latents(source: torch.Tensor, offset: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """w_src + s * offset per strength: source [num_ws, w_dim] -> [S, num_ws, w_dim]; strength 0 is the source exactly."""
    from sgsim.editing.mixing import move_by

    latents = move_by(source, offset.to(source)[None], torch.tensor([[float(s) for s in strengths]], dtype=source.dtype))[0]
    if not torch.isfinite(latents).all():
        raise SgsimError(f"the latents at strengths {list(strengths)} are not finite numbers (the offset or the source is too "
                         f"large for float32); use smaller strengths or weights")
    return latents


def direction_names(targets) -> list[str]:
    """A plain, distinct name per target (editing.Target): its sound's file stem, else its text ('a_snowy_day'),
    a repeat getting -2, -3, ..."""
    from sgsim.outputs import safe_stem, unique

    labels = [Path(t.audio).stem if isinstance(t.audio, (str, Path)) else (t.text or "sound") for t in targets]
    return unique(safe_stem(label, "direction", limit=90) for label in labels)


# ---- the file -----------------------------------------------------------------------------------------------

def save_directions(path: Union[str, Path], directions: Sequence[SoundDirection]) -> Path:
    """Write directions to one .sgdir file, atomically: tensors '<name>.offset', '<name>.target' and the JSON records."""
    from safetensors.torch import save

    from sgsim.atomic import atomic_output

    path = Path(path)
    names = [d.name for d in directions]
    if not directions or len(set(names)) != len(names):
        raise SgsimError(f"a direction file needs one or more directions with distinct names, got {names}")
    tensors = {}
    for d in directions:
        _check_name(d.name, path)
        tensors[f"{d.name}.offset"] = d.offset.detach().to("cpu", torch.float32).contiguous().clone()
        tensors[f"{d.name}.target"] = d.target.detach().to("cpu", torch.float32).contiguous().clone()
    records = {d.name: d.record() for d in directions}
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                METADATA_KEY: json.dumps(records, sort_keys=True, default=str)}
    data = save(tensors, metadata=metadata)
    with atomic_output(path) as stream:
        stream.write(data)
    return path


def load_directions(path: Union[str, Path]) -> dict[str, SoundDirection]:
    """Every direction of a .sgdir file by name, checked: any corrupt, truncated or foreign file is one SgsimError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SgsimError(f"direction file not found: {path}; make one with sgsim direction")
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = stream.metadata() or {}
            if metadata.get("format") != FORMAT_NAME or metadata.get("format_version") != str(FORMAT_VERSION):
                raise SgsimError(f"{path} is not an sgsim direction file (format {metadata.get('format')!r} version "
                                 f"{metadata.get('format_version')!r}, expected {FORMAT_NAME!r} {FORMAT_VERSION}); make one with sgsim direction")
            keys = set(stream.keys())
            records = _parse_records(metadata.get(METADATA_KEY, ""), path)
            expected = {f"{name}.{part}" for name in records for part in ("offset", "target")}
            if keys != expected:
                raise SgsimError(f"{path} is damaged: it holds tensors {sorted(keys)[:6]}, expected {sorted(expected)[:6]}")
            tensors = {key: stream.get_tensor(key) for key in sorted(keys)}
    except SafetensorError as error:
        raise SgsimError(f"{path} is not a readable direction file: truncated or corrupt ({error})") from None
    except (OSError, ValueError) as error:
        raise SgsimError(f"{path} is not a readable direction file ({type(error).__name__}: {error})") from None
    return {name: _direction(name, record, tensors[f"{name}.offset"], tensors[f"{name}.target"], path)
            for name, record in records.items()}


def _check_name(name: object, path: Path) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SgsimError(f"{path}: direction name {name!r} is not a plain name (letters, digits, '.', '_', '-', at most 100)")
    return name


# field -> the JSON types it may hold (None allowed where listed)
_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "generator": (dict,), "encoder": (dict,), "clip": (dict,), "sound": (dict, type(None)),
    "text": (str, type(None)), "settings": (dict,), "holdout": (dict, type(None)), "sgsim_version": (str,),
}


def _parse_records(text: str, path: Path) -> dict[str, dict]:
    if not isinstance(text, str) or not text or len(text) > MAX_METADATA_CHARS:
        raise SgsimError(f"{path} is damaged: its direction records are missing or oversized")
    try:
        records = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise SgsimError(f"{path} is damaged: its direction records are not valid JSON ({error})") from None
    if not isinstance(records, dict) or not records:
        raise SgsimError(f"{path} is damaged: it names no directions")
    for name, record in records.items():
        _check_name(name, path)
        if not isinstance(record, dict) or set(record) != set(_FIELDS) or record.get("name") != name:
            raise SgsimError(f"{path} is damaged: the record of {name!r} does not have the fields {', '.join(_FIELDS)}")
        wrong = [key for key, types in _FIELDS.items() if not isinstance(record[key], types)]
        if wrong:
            raise SgsimError(f"{path} is damaged: field {wrong[0]!r} of {name!r} has the wrong type")
        if not isinstance(record["generator"].get("architecture"), dict):
            raise SgsimError(f"{path} is damaged: {name!r} does not record its generator's architecture")
    return records


def _direction(name: str, record: dict, offset: torch.Tensor, target: torch.Tensor, path: Path) -> SoundDirection:
    """A SoundDirection from its checked record and tensors, whose dtypes, shapes and values are checked here."""
    arch = record["generator"]["architecture"]
    num_ws, w_dim = _num_ws(arch), arch.get("w_dim")
    if num_ws is None or not isinstance(w_dim, int):
        raise SgsimError(f"{path} is damaged: {name!r} records an impossible generator architecture")
    shape = (num_ws, w_dim)
    if offset.dtype != torch.float32 or tuple(offset.shape) != shape:
        raise SgsimError(f"{path} is damaged: the offset of {name!r} is {offset.dtype} {list(offset.shape)}, "
                         f"expected float32 {list(shape)} for its generator")
    if target.dtype != torch.float32 or target.dim() != 1 or not len(target):
        raise SgsimError(f"{path} is damaged: the target of {name!r} is {target.dtype} {list(target.shape)}, expected a float32 vector")
    if not (torch.isfinite(offset).all() and torch.isfinite(target).all()):
        raise SgsimError(f"{path} is damaged: {name!r} holds NaN or infinite values")
    return SoundDirection(offset=offset, target=target, **record)
