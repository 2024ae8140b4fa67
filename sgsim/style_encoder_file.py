"""Read an e4e / pSp checkpoint (encoder4editing, pixel2style2pixel) safely and check that it fits a generator.

The file is what their training code saves: torch.save({'state_dict': encoder.* and decoder.* weights (the decoder
a rosinality StyleGAN2 generator), 'latent_avg': [num_ws, 512], 'opts': the training options as a dict}). It is
read with torch's weights-only unpickler, so nothing in it runs; the options stay plain data. The encoder's shape
is read from the tensor shapes and checked against the options and the generator before any weight is used.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from checkpoints.containers import TORCH_LEGACY, TORCH_ZIP, ContainerError, check_complete, sniff_container
from sgsim.errors import NetworkFileError
from sgsim.identity import IrSeConfig
from sgsim.style_encoder import HEADS, StyleEncoder, StyleEncoderConfig
from stylegan2.errors import CheckpointError
from stylegan2.loading.load import load_torch_file
from stylegan2.loading.rosinality import convert_state_dict, rosinality_init_kwargs

EXPECTED = ("an e4e or pSp checkpoint: the torch.save dict {'state_dict', 'latent_avg', 'opts'} that "
            "encoder4editing / pixel2style2pixel save (e.g. e4e_ffhq_encode.pt)")
# Bounds on what the shapes may describe before anything is built: far above the published encoders
# (IR-SE152, 18 rows of 512), tight enough that a forged file cannot ask for more memory than it holds.
MAX_ROWS, MAX_WIDTH, MAX_UNITS = 64, 4096, 256
# Options the authors' code reads to build and run the encoder (opts['output_size'] is pSp's stylegan_size).
RESOLUTION_OPTIONS = ("stylegan_size", "output_size")
PLAIN = (str, int, float, bool, type(None))


class GeneratorMismatchWarning(UserWarning):
    """The encoder's decoder weights are not the chosen generator's: its codes may reconstruct the photo poorly."""


@dataclass
class StyleEncoderFile:
    """An encoder read from a checkpoint, ready in eval mode, with what the file says about its generator."""

    encoder: StyleEncoder
    latent_avg: torch.Tensor  # [num_ws, w_dim] added to the encoder's output (zeros without start_from_latent_avg)
    resolution: int  # the generator it was trained for, from the options (checked against the decoder)
    decoder_sha256: str  # checksum of the decoder's weights (mapping and synthesis, w_avg excluded)
    options: dict[str, Any] = field(default_factory=dict)  # the training options, plain data

    @property
    def head(self) -> str:
        return self.encoder.config.head


def _plain(value: Any, where: str, source: str) -> Any:
    """The options as plain Python data (weights-only loading allows nothing else); anything odd is refused."""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, where, source) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item, f"{where}.{key}", source) for key, item in value.items()}
    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":  # pSp variants that saved opts unconverted
        return _plain(vars(value), where, source)
    raise NetworkFileError(f"{source}: the option {where} is a {type(value).__name__}, not plain data; not {EXPECTED}")


def _read(path: Path) -> dict:
    """The checkpoint's top-level dict, read without running anything from it."""
    if not path.is_file():
        raise NetworkFileError(f"{path} is not a file; expected {EXPECTED}")
    if path.stat().st_size == 0:
        raise NetworkFileError(f"{path} is empty; download it again (`sgsim weights download e4e-ffhq`)")
    container = sniff_container(path)
    if container not in (TORCH_ZIP, TORCH_LEGACY):
        with path.open("rb") as stream:
            if stream.read(2) == b"PK":  # a zip whose central directory is gone: cut short
                raise NetworkFileError(f"{path} is a truncated or corrupt zip/torch.save file; download it again")
        raise NetworkFileError(f"{path} is not a torch.save file (it looks like: {container}); expected {EXPECTED}")
    try:
        check_complete(path, container)
        data = load_torch_file(path)
    except ContainerError as error:
        raise NetworkFileError(f"{path} is a truncated or corrupt torch.save file ({error}); download it again") from None
    except CheckpointError as error:
        raise NetworkFileError(str(error)) from None
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        held = ", ".join(sorted(map(str, data))[:6]) if isinstance(data, dict) else type(data).__name__
        raise NetworkFileError(f"{path} holds {held or 'nothing'}; expected {EXPECTED}")
    return data


def _split(state: dict, source: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The encoder's and the decoder's state dicts, prefixes removed; any other key or a non-tensor is refused."""
    parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "decoder": {}}
    for key, value in state.items():
        prefix, _, rest = str(key).partition(".")
        if prefix not in parts or not isinstance(value, torch.Tensor):
            raise NetworkFileError(f"{source}: state_dict key {str(key)[:80]!r} is not an encoder.* or decoder.* tensor; "
                                   f"not {EXPECTED}")
        parts[prefix][rest] = value
    if not parts["encoder"] or not parts["decoder"]:
        raise NetworkFileError(f"{source}: the state_dict lacks the {'encoder' if not parts['encoder'] else 'decoder'} "
                               f"weights; expected {EXPECTED}")
    return parts["encoder"], parts["decoder"]


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise NetworkFileError(f"{source}: the encoder lacks {key}; not an e4e / pSp IR-SE encoder")
    return tuple(state[key].shape)


def infer_config(encoder: dict[str, torch.Tensor], head: str, source: str) -> StyleEncoderConfig:
    """The encoder's shape from its tensors: units grouped into stages by width, rows counted, input size from
    the coarse heads' strided convolutions (each halves the map down to 1 px)."""
    stem = _shape(encoder, "input_layer.0.weight", source)
    if len(stem) != 4 or stem[1] != 3:
        raise NetworkFileError(f"{source}: the encoder reads {stem[1:2]} input channels; only RGB photo encoders "
                               "(3 channels) invert photos")
    units = sum(1 for key in encoder if re.fullmatch(r"body\.\d+\.res_layer\.1\.weight", key))
    rows = sum(1 for key in encoder if re.fullmatch(r"styles\.\d+\.linear\.weight", key))
    if not (0 < units <= MAX_UNITS and 0 < rows <= MAX_ROWS):
        raise NetworkFileError(f"{source}: an encoder of {units} residual units and {rows} W+ rows is not an e4e / pSp "
                               f"IR-SE encoder")
    widths = [_shape(encoder, f"body.{index}.res_layer.1.weight", source)[0] for index in range(units)]
    stages: list[list[int]] = []
    for width in widths:
        if stages and stages[-1][0] == width:
            stages[-1][1] += 1
        else:
            stages.append([width, 1])
    fc1 = _shape(encoder, "body.0.res_layer.5.fc1.weight", source)
    w_dim = _shape(encoder, "styles.0.linear.weight", source)[0]
    coarse_convs = sum(1 for key in encoder if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", key))
    if max(widths + [stem[0], w_dim]) > MAX_WIDTH or not fc1[0] or len(stages) < 3:
        raise NetworkFileError(f"{source}: widths {sorted(set(widths))}, w_dim {w_dim} and {len(stages)} stages do not "
                               f"describe an e4e / pSp IR-SE encoder")
    backbone = IrSeConfig(stem_channels=stem[0], stages=tuple((width, count) for width, count in stages),
                          se_reduction=widths[0] // fc1[0])
    return StyleEncoderConfig(head=head, num_ws=rows, w_dim=w_dim, backbone=backbone,
                              input_size=2 ** (coarse_convs + len(stages)))


def build_encoder(encoder: dict[str, torch.Tensor], config: StyleEncoderConfig, source: str) -> StyleEncoder:
    """The encoder with the file's weights, checked key by key and shape by shape before they are used."""
    try:
        with torch.device("meta"):
            template = StyleEncoder(config).state_dict()
    except ValueError as error:
        raise NetworkFileError(f"{source}: {error}") from None
    missing, unexpected = set(template) - set(encoder), set(encoder) - set(template)
    wrong = sorted(key for key in set(template) & set(encoder) if template[key].shape != encoder[key].shape)
    if missing or unexpected or wrong:
        problems = [f"{what}: {', '.join(sorted(keys)[:4])}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise NetworkFileError(f"{source}: the encoder weights do not form an e4e / pSp encoder ({'; '.join(problems)})")
    with torch.device("meta"):
        network = StyleEncoder(config)
    network.load_state_dict({key: value.float() for key, value in encoder.items()}, strict=True, assign=True)
    return network.eval().requires_grad_(False)


def weights_sha256(state: Mapping[str, torch.Tensor], keys: list[str]) -> str:
    """sha256 of these tensors (names, shapes, float32 values in the given order): equal weights, equal checksum."""
    digest = hashlib.sha256()
    for key in keys:
        tensor = state[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{list(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _compared_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """What a generator's weights checksum covers: everything but the tracked w_avg and the fixed FIR filters."""
    return sorted(key for key in state if key != "mapping.w_avg" and not key.endswith("resample_filter"))


def generator_sha256(generator) -> str:
    """The checksum read_style_encoder compares a file's decoder with: this generator's weights (w_avg excluded)."""
    state = generator.state_dict()
    return weights_sha256(state, _compared_keys(state))


def _resolution(options: dict, decoder_resolution: int, source: str) -> int:
    named = [options[name] for name in RESOLUTION_OPTIONS if isinstance(options.get(name), int)]
    resolution = named[0] if named else decoder_resolution  # pSp's output_size defaults to the 1024 px decoder
    if resolution != decoder_resolution:
        raise NetworkFileError(f"{source}: the options say {resolution} px but the decoder is {decoder_resolution} px; "
                               "the file is inconsistent")
    return resolution


def read_style_encoder(path: str | os.PathLike, generator) -> StyleEncoderFile:
    """The encoder in an e4e / pSp checkpoint, checked to fit `generator` (a stylegan2.Generator): its resolution,
    W+ rows and width must match (NetworkFileError otherwise); decoder weights that differ from the generator's
    only warn (GeneratorMismatchWarning), since an encoder still gives a start that optimisation can refine."""
    path = Path(path)
    source = str(path)
    data = _read(path)
    options = _plain(data.get("opts") or {}, "opts", source)
    if not isinstance(options, dict):
        raise NetworkFileError(f"{source}: opts is a {type(options).__name__}, expected the training options' dict")
    heads = {theirs: ours for ours, theirs in HEADS.items()}
    encoder_type = options.get("encoder_type", HEADS["psp"])  # pSp's own files predate the option; e4e's always set it
    if encoder_type not in heads:
        raise NetworkFileError(f"{source}: encoder_type {str(encoder_type)[:60]!r} is not supported; "
                               f"sgsim reads {', '.join(heads)}")
    encoder_state, decoder_state = _split(data["state_dict"], source)
    config = infer_config(encoder_state, heads[encoder_type], source)
    try:
        decoder = convert_state_dict(decoder_state, source)
        decoder_resolution = rosinality_init_kwargs(decoder_state, source)["img_resolution"]
    except CheckpointError as error:
        raise NetworkFileError(f"{source}: the decoder is not a rosinality StyleGAN2 generator ({error})") from None
    resolution = _resolution(options, decoder_resolution, source)
    if config.num_ws != 2 * int(math.log2(resolution)) - 2:
        raise NetworkFileError(f"{source}: {config.num_ws} W+ rows do not fit its {resolution} px decoder "
                               f"({2 * int(math.log2(resolution)) - 2} rows); the file is inconsistent")
    if (generator.img_resolution, generator.num_ws, generator.w_dim) != (resolution, config.num_ws, config.w_dim):
        raise NetworkFileError(
            f"{source} encodes for a {resolution} px generator with W+ {config.num_ws}x{config.w_dim}, but the chosen "
            f"generator is {generator.img_resolution} px with W+ {generator.num_ws}x{generator.w_dim}; use the encoder "
            "trained for this generator, or invert by optimisation (--method optimise)")
    encoder = build_encoder(encoder_state, config, source)
    latent_avg = _latent_avg(data.get("latent_avg"), options, generator, config, source)
    ours = generator.state_dict()
    keys = _compared_keys(decoder)
    decoder_sha256 = weights_sha256(decoder, keys)
    same_layout = set(keys) == set(_compared_keys(ours)) and all(ours[key].shape == decoder[key].shape for key in keys)
    if not same_layout or weights_sha256(ours, keys) != decoder_sha256:
        warnings.warn(f"{source} was trained with other generator weights than the chosen generator's (decoder "
                      f"checksum {decoder_sha256[:12]}); its codes may reconstruct the photo poorly: check "
                      "reconstruction.png, or refine them with --method e4e+optimise", GeneratorMismatchWarning, stacklevel=2)
    return StyleEncoderFile(encoder, latent_avg, resolution, decoder_sha256, options)


def _latent_avg(stored: Any, options: dict, generator, config: StyleEncoderConfig, source: str) -> torch.Tensor:
    """The average code the authors add (start_from_latent_avg): the file's, else the generator's mean w (what
    their code computes from the decoder when the file has none); zeros when the encoder was trained without it."""
    rows = (config.num_ws, config.w_dim)
    if not options.get("start_from_latent_avg", True):
        return torch.zeros(rows)
    if stored is None:
        return generator.mapping.w_avg.detach().float().cpu().reshape(1, -1).expand(rows).clone()
    if not isinstance(stored, torch.Tensor) or tuple(stored.shape) not in (rows, (config.w_dim,), (1, config.w_dim)):
        raise NetworkFileError(f"{source}: latent_avg has shape {list(getattr(stored, 'shape', []))}, expected "
                               f"[{rows[0]}, {rows[1]}]")
    return stored.detach().float().reshape(-1, config.w_dim).expand(rows).clone()


def write_style_encoder(path: str | os.PathLike, encoder: StyleEncoder, latent_avg: torch.Tensor, generator,
                        options: Mapping[str, Any]) -> None:
    """Save an encoder as encoder4editing's Coach does ({'state_dict': encoder.* and the generator as the rosinality
    decoder.*, 'latent_avg', 'opts'}), so read_style_encoder, the loader of the published files, reads it and checks
    it against `generator`. Encoder weights are stored in float16 (the loader casts them to float32); the decoder
    stays float32, as its checksum ties the file to the generator's exact weights."""
    from sgsim.atomic import atomic_output
    from stylegan2.loading.rosinality import rosinality_state_dict

    weights = {f"encoder.{key}": value.detach().cpu().half() if value.is_floating_point() else value.detach().cpu()
               for key, value in encoder.state_dict().items()}
    decoder = {f"decoder.{key}": value.detach().cpu().float().contiguous()
               for key, value in rosinality_state_dict(generator.state_dict()).items()}
    opts = {"encoder_type": HEADS[encoder.config.head], "stylegan_size": generator.img_resolution,
            "start_from_latent_avg": True, **options}
    with atomic_output(path) as stream:
        torch.save({"state_dict": {**weights, **decoder}, "latent_avg": latent_avg.detach().cpu().float(),
                    "opts": _plain(opts, "opts", str(path))}, stream)
