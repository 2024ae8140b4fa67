"""One entry point for every generator checkpoint: detect the format from content, read it safely, build the Generator."""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from stylegan2.errors import CheckpointError, UnsafeCheckpointError
from stylegan2.loading.checkpoint import GeneratorCheckpoint
from stylegan2.loading.detect import detect_container, expected_formats
from stylegan2.loading.native import read_native
from stylegan2.loading.nvidia import read_nvidia_pickle
from stylegan2.loading.rosinality import read_rosinality
from stylegan2.loading.safe_pickle import PersistentObject, TFNetworkState, safe_load
from stylegan2.loading.tensorflow import read_tensorflow_pickle
from stylegan2.networks import Generator

# rosinality's generate.py estimates the mean W from 4096 samples when a checkpoint has no latent_avg.
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only; rosinality training checkpoints also pickle their argparse.Namespace."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"{path} was refused by torch's weights-only loader (nothing was executed): "
                                    f"{str(error).splitlines()[0]}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
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
    if container == "torch":
        return read_rosinality(_torch_load(path), network, str(path))
    return _read_pickle(path, network)


def _first(keys: set[str]) -> str:
    return ", ".join(sorted(keys)[:5]) + (", ..." if len(keys) > 5 else "")


def _mean_w(G: Generator) -> torch.Tensor:
    """The mean of mapped W over seeded random z, for checkpoints that store no average."""
    z = torch.randn([W_AVG_SAMPLES, G.z_dim], generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return G.mapping(z, torch.zeros([W_AVG_SAMPLES, G.c_dim]), truncation_psi=1)[:, 0].mean(dim=0)


def build_generator(checkpoint: GeneratorCheckpoint, source: str) -> Generator:
    """Generator(**init_kwargs) with the checkpoint's state loaded strictly; filter buffers come from the build."""
    try:
        G = Generator(**checkpoint.init_kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as error:
        raise CheckpointError(f"{source}: cannot build a generator from {checkpoint.init_kwargs} ({error})") from None
    template = G.state_dict()
    state = dict(checkpoint.state_dict)
    # FIR filters are fixed by resample_filter, and only NVIDIA pickles store them.
    state.update({key: value for key, value in template.items() if key.endswith("resample_filter") and key not in state})
    estimate_w_avg = "mapping.w_avg" in template and "mapping.w_avg" not in state
    if estimate_w_avg:
        state["mapping.w_avg"] = template["mapping.w_avg"]
    missing, unexpected = set(template) - set(state), set(state) - set(template)
    wrong = {key for key in set(template) & set(state) if template[key].shape != state[key].shape}
    if missing or unexpected or wrong:
        problems = [f"{what}: {_first(keys)}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source} does not match the generator its kwargs describe ({'; '.join(problems)})")
    G.load_state_dict(state, strict=True)
    G.metadata = dict(checkpoint.metadata)  # what the file says the generator is (training set); save_generator keeps it
    G.eval()
    if estimate_w_avg:
        G.mapping.w_avg.copy_(_mean_w(G))
    return G


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", network: str = "G_ema") -> Generator:
    """The generator in any supported checkpoint, in eval mode on `device`; the format is read from the content.

    `network` picks 'G_ema' (default; Gs in TensorFlow pickles, g_ema in rosinality files) or 'G'.
    """
    checkpoint = read_checkpoint(path, network)
    return build_generator(checkpoint, str(path)).to(device)
