"""One entry point for every generator checkpoint: detect the format from content, read it safely, build the Generator."""

from __future__ import annotations

import argparse
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from checkpoints.containers import refusal_line
from stylegan2.errors import CheckpointError, UnsafeCheckpointError
from stylegan2.loading.checkpoint import GeneratorCheckpoint
from stylegan2.loading.detect import detect_container, expected_formats
from stylegan2.loading.native import read_native
from stylegan2.loading.nvidia import read_nvidia_pickle
from stylegan2.loading.rosinality import read_rosinality
from stylegan2.loading.safe_pickle import PersistentObject, TFNetworkState, safe_load
from stylegan2.loading.tensorflow import read_tensorflow_pickle
from stylegan2.families import make_generator
from stylegan2.networks import Generator, NetworkConfigError

# rosinality's generate.py estimates the mean W from 4096 samples when a checkpoint has no latent_avg.
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0

# Bounds on a checkpoint's settings, checked before anything is built: generous beyond every published
# StyleGAN2 (1024 px, 512-d latents, 8 mapping layers), tight enough that a forged file cannot ask for gigabytes.
SETTING_BOUNDS = {
    "z_dim": (0, 8192), "c_dim": (0, 65536), "w_dim": (1, 8192), "img_resolution": (4, 8192), "img_channels": (1, 16),
}
MAPPING_BOUNDS = {"num_layers": (1, 64), "embed_features": (1, 8192), "layer_features": (1, 8192)}
SYNTHESIS_BOUNDS = {
    "channel_base": (1, 2**24), "channel_max": (1, 8192), "num_fp16_res": (0, 16),
    # StyleGAN3 only (NVIDIA's: 14 layers, 2 critical, margin 10, 6 taps, lrelu at 2x, 3x3 or 1x1 kernels).
    "num_layers": (1, 64), "num_critical": (0, 64), "margin_size": (0, 1024), "filter_size": (1, 64),
    "lrelu_upsampling": (1, 16), "conv_kernel": (1, 15),
}


def load_torch_file(path: Path) -> Any:
    """torch.load with weights_only (every torch.save file sgsim reads); rosinality training checkpoints also pickle
    their argparse.Namespace.

    A forged view past its storage fails here too: torch.load's storages cannot be resized.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"{path} was refused by torch's weights-only loader (nothing was executed): "
                                    f"{refusal_line(error)}") from None
    except (RuntimeError, EOFError, ValueError, OSError, TypeError, OverflowError, RecursionError) as error:
        raise CheckpointError(f"{path} is a truncated or corrupt torch.save file ({error})") from None


def _read_pickle(path: Path, network: str) -> GeneratorCheckpoint:
    """NVIDIA PyTorch vs TensorFlow pickle, decided by the globals the pickle names."""
    with path.open("rb") as stream:
        data, globals_named = safe_load(stream, str(path))
    if "dnnlib.tflib.network.Network" in globals_named:
        if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(net, TFNetworkState) for net in data)):
            raise CheckpointError(f"{path} holds TensorFlow networks but not the (G, D, Gs) tuple StyleGAN2 saves")
        return read_tensorflow_pickle(data, network, str(path))
    if "torch_utils.persistence._reconstruct_persistent_obj" in globals_named:
        if not (isinstance(data, dict) and any(isinstance(value, PersistentObject) for value in data.values())):
            raise CheckpointError(f"{path} holds NVIDIA persistent objects but not the snapshot dict (G, D, G_ema)")
        return read_nvidia_pickle(data, network, str(path))
    raise CheckpointError(f"{path} is a pickle without StyleGAN networks (it holds a {type(data).__name__}); "
                          f"expected one of: {expected_formats()}")


def read_checkpoint(path: str | os.PathLike, network: str = "G_ema") -> GeneratorCheckpoint:
    """The init kwargs and NVIDIA-named state dict of generator `network` in any supported file."""
    path = Path(path)
    container = detect_container(path)
    if container == "safetensors":
        return read_native(path)
    try:
        if container in ("torch-zip", "torch-legacy"):
            return read_rosinality(load_torch_file(path), network, str(path))
        return _read_pickle(path, network)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError, OverflowError) as error:
        # The readers walk untrusted nested data; a field of the wrong type must still be one line.
        raise CheckpointError(f"{path} does not have the layout of a generator checkpoint "
                              f"({type(error).__name__}: {str(error)[:200]})") from None


def _first(keys: set[str]) -> str:
    return ", ".join(sorted(keys)[:5]) + (", ..." if len(keys) > 5 else "")


def _mean_w(G: Generator) -> torch.Tensor:
    """The mean of mapped W over seeded random z, for checkpoints that store no average."""
    z = torch.randn([W_AVG_SAMPLES, G.z_dim], generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return G.mapping(z, torch.zeros([W_AVG_SAMPLES, G.c_dim]), truncation_psi=1)[:, 0].mean(dim=0)


def _check_int(source: str, name: str, value: Any, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(f"{source}: the generator setting {name}={str(value)[:40]} is not an integer in "
                              f"[{low}, {high}]; the file is corrupt or not a StyleGAN2 generator")


def check_settings(init_kwargs: Any, source: str) -> None:
    """Refuse settings of the wrong type or beyond SETTING_BOUNDS before anything is built from them."""
    if not isinstance(init_kwargs, dict):
        raise CheckpointError(f"{source}: the generator settings are a {type(init_kwargs).__name__}, expected a dict")
    for name, bounds in SETTING_BOUNDS.items():
        _check_int(source, name, init_kwargs.get(name), bounds)
    resolution = init_kwargs["img_resolution"]
    if resolution & (resolution - 1):
        raise CheckpointError(f"{source}: img_resolution={resolution} is not a power of two")
    for group, bounds_of in (("mapping_kwargs", MAPPING_BOUNDS), ("synthesis_kwargs", SYNTHESIS_BOUNDS)):
        options = init_kwargs.get(group) or {}
        if not isinstance(options, dict):
            raise CheckpointError(f"{source}: the generator's {group} are a {type(options).__name__}, expected a dict")
        for name, bounds in bounds_of.items():
            if options.get(name) is not None:
                _check_int(source, f"{group}.{name}", options[name], bounds)
    synthesis = init_kwargs.get("synthesis_kwargs") or {}
    if synthesis.get("channel_base", 32768) < resolution:  # the last block would have 0 channels
        raise CheckpointError(f"{source}: channel_base={synthesis['channel_base']} leaves no channels at "
                              f"{resolution} px; the file is corrupt")


def _meta_generator(init_kwargs: dict[str, Any], source: str) -> torch.nn.Module:
    """The generator the settings describe, on the meta device: shapes without a byte of storage."""
    check_settings(init_kwargs, source)
    try:
        with torch.device("meta"):
            return make_generator(init_kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, ZeroDivisionError, OverflowError, NetworkConfigError) as error:
        raise CheckpointError(f"{source}: cannot build a generator from {str(init_kwargs)[:300]} ({error})") from None


def _fitted_state(checkpoint: GeneratorCheckpoint, source: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor], set[str]]:
    """The checkpoint's state checked key by key and shape by shape against the meta generator its settings
    describe (StyleGAN2 or StyleGAN3, stylegan2.families); returns that meta generator, the state and the keys the build must supply (FIR filters, an absent w_avg)."""
    meta = _meta_generator(checkpoint.init_kwargs, source)
    template = meta.state_dict()
    state = dict(checkpoint.state_dict)
    # FIR filters are fixed by resample_filter, and only NVIDIA pickles store them.
    from_build = {key for key in template if key.endswith("resample_filter") and key not in state}
    if "mapping.w_avg" in template and "mapping.w_avg" not in state:
        from_build.add("mapping.w_avg")
    missing, unexpected = set(template) - set(state) - from_build, set(state) - set(template)
    wrong = {key for key in set(template) & set(state) if template[key].shape != state[key].shape}
    if missing or unexpected or wrong:
        problems = [f"{what}: {_first(keys)}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source} does not match the generator its kwargs describe ({'; '.join(problems)})")
    return meta, state, from_build


@dataclass(frozen=True)
class GeneratorSummary:
    """What a generator file holds, found without allocating its network: to check a file is the one its name promises."""

    format: str  # a key of detect.FORMATS
    resolution: int  # output images are resolution x resolution pixels
    w_plus_rows: int  # rows of a W+ latent (num_ws): 18 at 1024 px, 16 at 512, 14 at 256
    w_dim: int
    c_dim: int  # 0 for an unconditional generator


def describe_generator(path: str | os.PathLike, network: str = "G_ema") -> GeneratorSummary:
    """Format, resolution and W+ rows of the generator in any supported file, its state checked against them."""
    checkpoint = read_checkpoint(path, network)
    meta, _, _ = _fitted_state(checkpoint, str(path))
    return GeneratorSummary(checkpoint.format, meta.img_resolution, meta.num_ws, meta.w_dim, meta.c_dim)


def build_generator(checkpoint: GeneratorCheckpoint, source: str) -> torch.nn.Module:
    """The generator init_kwargs describe (StyleGAN2 or StyleGAN3, stylegan2.families) with the checkpoint's state
    loaded strictly; filter buffers come from the build.

    The settings are checked against bounds and every tensor shape against the file before any weight is
    allocated, so memory follows the file's size, never what its settings claim.
    """
    _, state, from_build = _fitted_state(checkpoint, source)
    estimate_w_avg = "mapping.w_avg" in from_build
    G = make_generator(checkpoint.init_kwargs)
    built = G.state_dict()
    state.update({key: built[key] for key in from_build})
    G.load_state_dict(state, strict=True)
    G.metadata = dict(checkpoint.metadata)  # what the file says the generator is (training set); save_generator keeps it
    G.eval()
    if estimate_w_avg:
        G.mapping.w_avg.copy_(_mean_w(G))
    return G


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", network: str = "G_ema") -> torch.nn.Module:
    """The generator in any supported checkpoint, in eval mode on `device`; the format is read from the content.

    `network` picks 'G_ema' (default; Gs in TensorFlow pickles, g_ema in rosinality files) or 'G'.
    """
    checkpoint = read_checkpoint(path, network)
    return build_generator(checkpoint, str(path)).to(device)
