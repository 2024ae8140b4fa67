"""What every format reader returns: the Generator's init kwargs (the networks.py contract) and its state dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from stylegan2.errors import CheckpointError

# Defaults of StyleGAN2-ADA's MappingNetwork / SynthesisNetwork (NVlabs/stylegan2-ada-pytorch training/networks.py),
# plus label_concat for original-StyleGAN2 conditional models. Readers write every key out, so a checkpoint
# never depends on the defaults of our own Generator.
MAPPING_DEFAULTS: dict[str, Any] = {
    "num_layers": 8, "embed_features": None, "layer_features": None, "activation": "lrelu",
    "lr_multiplier": 0.01, "w_avg_beta": 0.995, "label_concat": False,
}
SYNTHESIS_DEFAULTS: dict[str, Any] = {
    "channel_base": 32768, "channel_max": 512, "num_fp16_res": 0, "conv_clamp": None, "architecture": "skip",
    "resample_filter": [1, 3, 3, 1], "use_noise": True, "fp16_channels_last": False,
}


@dataclass
class GeneratorCheckpoint:
    """A generator read from a file: `Generator(**init_kwargs).load_state_dict(state_dict)` rebuilds it."""

    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    format: str  # a key of detect.FORMATS (the manifest's format names)
    # What the file says about the generator beyond its architecture: "dataset", the training set's name
    # (NVIDIA snapshots' training_set_kwargs path, or what save_generator kept); empty when it says nothing.
    metadata: dict[str, str] = field(default_factory=dict)


def noise_const_key(index: int) -> str:
    """NVIDIA key of the i-th per-layer noise input (TF `noise{i}`, rosinality `noises.noise_{i}`).

    noise0 is b4.conv1; for R = 2^k, noise{2k-5} is bR.conv0 and noise{2k-4} is bR.conv1 (ADA legacy.py).
    """
    res = 2 ** ((index + 5) // 2)
    return f"synthesis.b{res}.{'conv0' if index % 2 else 'conv1'}.noise_const"


def plain(value: Any) -> Any:
    """`value` with numpy scalars, tuples and dict subclasses turned into JSON-able Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def _complete(source: str, what: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise CheckpointError(
            f"{source}: the generator's {what} include {', '.join(unknown)}, which this StyleGAN2 generator "
            f"does not support (it knows {', '.join(defaults)})"
        )
    return {key: plain(given.get(key, default)) for key, default in defaults.items()}


def generator_kwargs(source: str, *, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                     mapping: Mapping[str, Any], synthesis: Mapping[str, Any]) -> dict[str, Any]:
    """The complete, JSON-able init kwargs of our Generator; unknown mapping/synthesis options raise."""
    return {
        "z_dim": int(z_dim), "c_dim": int(c_dim), "w_dim": int(w_dim),
        "img_resolution": int(img_resolution), "img_channels": int(img_channels),
        "mapping_kwargs": _complete(source, "mapping kwargs", mapping, MAPPING_DEFAULTS),
        "synthesis_kwargs": _complete(source, "synthesis kwargs", synthesis, SYNTHESIS_DEFAULTS),
    }
