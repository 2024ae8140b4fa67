"""NVIDIA PyTorch pickles (StyleGAN2-ADA; StyleGAN3's networks_stylegan2 and networks_stylegan3) read without running their code.

Each network in the pickled dict is a torch_utils.persistence object; its state is the module's __dict__.
The state dict is collected from the nested `_parameters`, `_buffers` and `_modules`, and the architecture
from `_init_kwargs` (nested mapping_kwargs/synthesis_kwargs in ADA, flattened synthesis kwargs in SG3).
A StyleGAN3-T/-R generator is told by its Fourier-feature input layer (synthesis.input).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Mapping

import torch

from stylegan2 import networks_stylegan3
from stylegan2.errors import CheckpointError, NetworkConfigError
from stylegan2.loading.checkpoint import GeneratorCheckpoint, generator_kwargs, plain
from stylegan2.loading.safe_pickle import PersistentObject

TOP_LEVEL_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")

# Where SG3's networks_stylegan2 defaults differ from ADA's (NVlabs/stylegan3 training/networks_stylegan2.py).
SG3_MAPPING_DEFAULTS = {"w_avg_beta": 0.998}
SG3_SYNTHESIS_DEFAULTS = {"num_fp16_res": 4, "conv_clamp": 256}

# Synthesis options that change speed, not output (SG3's fused_modconv_default).
IGNORED_SYNTHESIS_KWARGS = frozenset({"fused_modconv_default"})
# Synthesis options our Generator supports at one value only; ADA's legacy converter writes activation out.
FIXED_SYNTHESIS_KWARGS = {"activation": "lrelu"}


def flatten_module_state(obj: PersistentObject, source: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a pickled module: its parameters and persistent buffers, then its submodules'."""
    state = obj.state
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    tensors: dict[str, torch.Tensor] = {}
    entries = [*state.get("_parameters", {}).items(),
               *((name, value) for name, value in state.get("_buffers", {}).items() if name not in non_persistent)]
    for name, value in entries:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {prefix}{name} is a {type(value).__name__}, expected a tensor")
        tensors[prefix + name] = value.detach()
    for name, child in state.get("_modules", {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(f"{source}: submodule {prefix}{name} is a {type(child).__name__}, "
                                  "expected a torch_utils.persistence object")
        tensors.update(flatten_module_state(child, source, f"{prefix}{name}."))
    return tensors


def _drop_inert(synthesis: dict[str, Any], source: str) -> dict[str, Any]:
    kept = {key: value for key, value in synthesis.items() if key not in IGNORED_SYNTHESIS_KWARGS}
    for key, supported in FIXED_SYNTHESIS_KWARGS.items():
        if key in kept and kept.pop(key) != supported:
            raise CheckpointError(f"{source}: synthesis {key}={synthesis[key]!r} is not supported (only {supported!r})")
    return kept


def contract_kwargs(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map ADA's nested or SG3's flattened Generator kwargs to our Generator's init kwargs."""
    kwargs = dict(raw)
    missing = [key for key in TOP_LEVEL_KWARGS if key not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: the generator's init kwargs lack {', '.join(missing)}")
    top = {key: kwargs.pop(key) for key in TOP_LEVEL_KWARGS}
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    if "synthesis_kwargs" in kwargs:  # ADA: Generator(..., mapping_kwargs={}, synthesis_kwargs={})
        synthesis = dict(kwargs.pop("synthesis_kwargs") or {})
        if kwargs:
            raise CheckpointError(f"{source}: unknown generator init kwargs {', '.join(sorted(kwargs))}")
    else:  # SG3 networks_stylegan2: Generator(..., mapping_kwargs={}, **synthesis_kwargs)
        mapping = {**SG3_MAPPING_DEFAULTS, **mapping}
        synthesis = {**SG3_SYNTHESIS_DEFAULTS, **kwargs}
    return generator_kwargs(source, **top, mapping=mapping, synthesis=_drop_inert(synthesis, source))


def contract_stylegan3_kwargs(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map networks_stylegan3.Generator's kwargs (mapping_kwargs, then flattened synthesis and layer kwargs) to ours."""
    kwargs = dict(raw)
    missing = [key for key in TOP_LEVEL_KWARGS if key not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: the generator's init kwargs lack {', '.join(missing)}")
    top = {key: plain(kwargs.pop(key)) for key in TOP_LEVEL_KWARGS}
    mapping = plain(dict(kwargs.pop("mapping_kwargs", None) or {}))
    try:
        return networks_stylegan3.settings(**top, mapping_kwargs=mapping, synthesis_kwargs=plain(kwargs))
    except NetworkConfigError as error:
        raise CheckpointError(f"{source}: this StyleGAN3 generator has settings sgsim does not know ({error})") from None


def read_nvidia_pickle(data: Any, network: str, source: str) -> GeneratorCheckpoint:
    """The generator `network` ('G_ema', 'G', ...) of an unpickled NVIDIA snapshot dict."""
    networks = sorted(key for key, value in data.items() if isinstance(value, PersistentObject))
    if network not in data:
        raise CheckpointError(f"{source} has no network {network!r}; it holds {', '.join(networks) or 'no networks'}")
    obj = data[network]
    if not isinstance(obj, PersistentObject) or obj.class_name != "Generator":
        kind = obj.class_name if isinstance(obj, PersistentObject) else type(obj).__name__
        raise CheckpointError(f"{source}: {network!r} is a {kind}, not a generator; choose one of "
                              f"{', '.join(name for name in networks if data[name].class_name == 'Generator')}")
    state_dict = flatten_module_state(obj, source)
    if obj.state.get("_init_args"):
        raise CheckpointError(f"{source}: {network!r} was built with positional arguments; expected keyword arguments")
    metadata = training_set_metadata(data)
    if "synthesis.input.weight" in state_dict:
        init_kwargs = contract_stylegan3_kwargs(obj.state.get("_init_kwargs") or {}, source)
        return GeneratorCheckpoint(init_kwargs, state_dict, "nvidia-pickle", metadata)
    if "synthesis.b4.const" not in state_dict:
        synthesis = obj.state.get("_modules", {}).get("synthesis")
        layers = ", ".join(sorted(synthesis.state.get("_modules", {}))[:4]) if synthesis else "missing"
        raise CheckpointError(
            f"{source}: {network!r} is neither a StyleGAN2 nor a StyleGAN3 generator (its synthesis layers are "
            f"{layers}, ...); use a StyleGAN2, StyleGAN2-ADA or StyleGAN3 (T or R) pickle"
        )
    init_kwargs = contract_kwargs(obj.state.get("_init_kwargs") or {}, source)
    return GeneratorCheckpoint(init_kwargs, state_dict, "nvidia-pickle", metadata)


def training_set_metadata(data: Mapping[str, Any]) -> dict[str, str]:
    """{"dataset": name} from a snapshot's training_set_kwargs path ('~/datasets/ffhq-1024.zip' -> 'ffhq-1024'), if any."""
    kwargs = data.get("training_set_kwargs")
    path = kwargs.get("path") if isinstance(kwargs, Mapping) else None
    if not isinstance(path, str) or not path.strip():
        return {}
    name = PurePosixPath(path.replace("\\", "/").rstrip("/")).name
    return {"dataset": name.removesuffix(".zip")} if name else {}
