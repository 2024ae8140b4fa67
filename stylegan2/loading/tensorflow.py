"""NVIDIA's TensorFlow StyleGAN2 pickles, a tuple (G, D, Gs) of dnnlib.tflib.network.Network, read without TensorFlow.

Variables are renamed to NVIDIA's PyTorch keys with transposes, flips and the affine bias offset only
(docs/reference.md#tensorflow-pickles); the architecture comes from the networks' static_kwargs and variable shapes.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import torch

from stylegan2.errors import CheckpointError
from stylegan2.loading.checkpoint import GeneratorCheckpoint, generator_kwargs, noise_const_key
from stylegan2.loading.safe_pickle import TFNetworkState

# The pickle holds (G, D, Gs); Gs is the moving average of G, which PyTorch snapshots call G_ema.
NETWORK_INDEX = {"G": 0, "G_ema": 2}
MIN_TF_NETWORK_VERSION = 4  # dnnlib.tflib.network state version written by StyleGAN2
# Synthesis build functions with StyleGAN2's layer names: config E/F (stylegan2) and the TF StyleGAN2-ADA.
SUPPORTED_SYNTHESIS_FUNCS = frozenset({"G_synthesis_stylegan2", "G_synthesis"})

# static kwarg -> (section, our name, default), defaults from G_main/G_mapping/G_synthesis* of NVlabs/stylegan2(-ada).
TF_KWARGS: dict[str, tuple[str, str, Any]] = {
    "latent_size": ("top", "z_dim", 512),
    "label_size": ("top", "c_dim", 0),
    "dlatent_size": ("top", "w_dim", 512),
    "resolution": ("top", "img_resolution", 1024),
    "num_channels": ("top", "img_channels", 3),
    "mapping_layers": ("mapping", "num_layers", 8),
    "mapping_nonlinearity": ("mapping", "activation", "lrelu"),
    "mapping_lrmul": ("mapping", "lr_multiplier", 0.01),
    "fmap_max": ("synthesis", "channel_max", 512),
    "num_fp16_res": ("synthesis", "num_fp16_res", 0),
    "conv_clamp": ("synthesis", "conv_clamp", None),
    "architecture": ("synthesis", "architecture", "skip"),
    "resample_kernel": ("synthesis", "resample_filter", [1, 3, 3, 1]),
    "use_noise": ("synthesis", "use_noise", True),
}
# Handled apart: fmap_base (channel_base = 2 * fmap_base), the w_avg decay, and widths read from variable shapes.
SPECIAL_TF_KWARGS = frozenset({"fmap_base", "dlatent_avg_beta", "w_avg_beta", "mapping_fmaps", "label_fmaps"})
# Options that change the architecture, accepted only at their default value.
FIXED_TF_KWARGS: dict[str, Any] = {
    "nonlinearity": "lrelu", "fmap_decay": 1, "fmap_min": 1, "fmap_const": None, "normalize_latents": True,
}
# Non-square forks: accepted only when they equal `resolution`.
SQUARE_TF_KWARGS = ("resolution_w", "resolution_h")
# Call-time and training-time options that do not change the weights' meaning.
HARMLESS_TF_KWARGS = frozenset({
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val", "style_mixing_prob",
    "structure", "conditioning", "fused_modconv", "randomize_noise", "dtype", "is_training", "is_validation",
    "return_dlatents", "mapping_func", "synthesis_func",
})

_LAYER_NAMES = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb", "Skip": "skip"}
_FLIPPED_LAYERS = ("Conv0_up", "Skip")  # TF's up-sampling conv stores its kernel flipped


def _conv_weight(value: np.ndarray, flip: bool) -> np.ndarray:
    """TF conv kernel [kh, kw, in, out] -> PyTorch [out, in, kh, kw]."""
    return (value[::-1, ::-1] if flip else value).transpose(3, 2, 0, 1)


def _synthesis_variable(match: re.Match, value: np.ndarray) -> tuple[str, np.ndarray]:
    res, layer, param = match.groups()
    key = f"synthesis.b{res}.{_LAYER_NAMES[layer]}"
    converted = {
        "weight": lambda: ("weight", _conv_weight(value, layer in _FLIPPED_LAYERS)),
        "bias": lambda: ("bias", value),
        "noise_strength": lambda: ("noise_strength", value),
        "mod_weight": lambda: ("affine.weight", value.T),
        "mod_bias": lambda: ("affine.bias", value + 1),  # TF adds the 1 at run time; ADA's affine bias holds it
    }[param]()
    return f"{key}.{converted[0]}", converted[1]


_VARIABLE_RULES: list[tuple[str, Callable[[re.Match, np.ndarray], tuple[str, np.ndarray]]]] = [
    (r"dlatent_avg", lambda m, v: ("mapping.w_avg", v)),
    (r"mapping/Dense(\d+)/weight", lambda m, v: (f"mapping.fc{m.group(1)}.weight", v.T)),
    (r"mapping/Dense(\d+)/bias", lambda m, v: (f"mapping.fc{m.group(1)}.bias", v)),
    (r"mapping/LabelConcat/weight", lambda m, v: ("mapping.label_concat.weight", v)),
    (r"mapping/LabelEmbed/weight", lambda m, v: ("mapping.embed.weight", v.T)),
    (r"mapping/LabelEmbed/bias", lambda m, v: ("mapping.embed.bias", v)),
    (r"synthesis/4x4/Const/const", lambda m, v: ("synthesis.b4.const", v[0])),
    (r"synthesis/noise(\d+)", lambda m, v: (noise_const_key(int(m.group(1))), v[0, 0])),
    (r"synthesis/(\d+)x\1/(Conv|Conv0_up|Conv1|ToRGB|Skip)/(weight|bias|noise_strength|mod_weight|mod_bias)",
     _synthesis_variable),
]


# G_main's progressive-growing level of detail: StyleGAN2 keeps it at 0 and has no PyTorch counterpart.
_IGNORED_VARIABLES = {"lod": 0.0}


def collect_variables(net: TFNetworkState, source: str, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of a network and its components, named `component/.../variable`."""
    variables = {prefix + name: np.asarray(value) for name, value in net.state.get("variables", [])}
    for name, component in net.state.get("components", {}).items():
        if not isinstance(component, TFNetworkState):
            raise CheckpointError(f"{source}: component {prefix}{name} is a {type(component).__name__}, "
                                  "expected a dnnlib.tflib.network.Network")
        variables.update(collect_variables(component, source, f"{prefix}{name}/"))
    return variables


def convert_variables(variables: dict[str, np.ndarray], source: str) -> dict[str, torch.Tensor]:
    """TF variables -> NVIDIA PyTorch state dict; an unknown variable raises."""
    state_dict = {}
    for name, value in variables.items():
        if name in _IGNORED_VARIABLES:
            if not np.all(value == _IGNORED_VARIABLES[name]):
                raise CheckpointError(f"{source}: TensorFlow variable {name!r} is {value}, expected "
                                      f"{_IGNORED_VARIABLES[name]}; a progressive-growing snapshot is not a StyleGAN2 generator")
            continue
        for pattern, rule in _VARIABLE_RULES:
            match = re.fullmatch(pattern, name)
            if match:
                key, array = rule(match, value)
                state_dict[key] = torch.from_numpy(np.array(array, order="C"))  # a copy: flips leave negative strides
                break
        else:
            raise CheckpointError(f"{source}: TensorFlow variable {name!r} has no StyleGAN2 counterpart; "
                                  "only StyleGAN2 config E/F and StyleGAN2-ADA generators are supported")
    return state_dict


def _check_static_kwargs(kwargs: dict[str, Any], source: str) -> None:
    for key, supported in FIXED_TF_KWARGS.items():
        if key in kwargs and kwargs[key] != supported:
            raise CheckpointError(f"{source}: static kwarg {key}={kwargs[key]!r} changes the architecture; "
                                  f"only {supported!r} is supported")
    resolution = kwargs.get("resolution", TF_KWARGS["resolution"][2])
    for key in SQUARE_TF_KWARGS:
        if kwargs.get(key, resolution) != resolution:
            raise CheckpointError(f"{source}: {key}={kwargs[key]} differs from resolution={resolution}; "
                                  "non-square generators are not supported")
    known = set(TF_KWARGS) | SPECIAL_TF_KWARGS | set(FIXED_TF_KWARGS) | set(SQUARE_TF_KWARGS) | HARMLESS_TF_KWARGS
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise CheckpointError(f"{source}: unknown TensorFlow static kwargs {', '.join(unknown)}; the known harmless "
                              f"ones are {', '.join(sorted(HARMLESS_TF_KWARGS | set(SQUARE_TF_KWARGS)))}")


def tf_init_kwargs(kwargs: dict[str, Any], variables: dict[str, np.ndarray], source: str) -> dict[str, Any]:
    """Our Generator's init kwargs from a Gs network's static kwargs and its variables' shapes."""
    _check_static_kwargs(kwargs, source)
    sections: dict[str, dict[str, Any]] = {"top": {}, "mapping": {}, "synthesis": {}}
    for tf_name, (section, name, default) in TF_KWARGS.items():
        sections[section][name] = kwargs.get(tf_name, default)
    mapping, synthesis = sections["mapping"], sections["synthesis"]
    synthesis["channel_base"] = 2 * kwargs.get("fmap_base", 16384)  # TF: nf = fmap_base / 2^(log2(res) - 1)
    beta = kwargs.get("dlatent_avg_beta", kwargs.get("w_avg_beta", 0.995))
    mapping["w_avg_beta"] = 1 if beta is None else beta  # as ADA's legacy.py: w_avg must exist for truncation
    if mapping["num_layers"] > 1 and "mapping/Dense0/weight" in variables:
        mapping["layer_features"] = variables["mapping/Dense0/weight"].shape[1]
    if "mapping/LabelEmbed/weight" in variables:
        mapping["embed_features"] = variables["mapping/LabelEmbed/weight"].shape[1]
    mapping["label_concat"] = "mapping/LabelConcat/weight" in variables
    return generator_kwargs(source, **sections["top"], mapping=mapping, synthesis=synthesis)


def read_tensorflow_pickle(data: tuple, network: str, source: str) -> GeneratorCheckpoint:
    """The generator `network` ('G_ema' = Gs, or 'G') of an unpickled (G, D, Gs) tuple."""
    if network not in NETWORK_INDEX:
        raise CheckpointError(f"{source} is a TensorFlow (G, D, Gs) pickle; network {network!r} is not a generator "
                              f"there, choose one of {', '.join(NETWORK_INDEX)}")
    net = data[NETWORK_INDEX[network]]
    version = net.state.get("version", 0)
    if version < MIN_TF_NETWORK_VERSION:
        raise CheckpointError(f"{source}: TensorFlow network version {version} predates StyleGAN2 "
                              f"(needs {MIN_TF_NETWORK_VERSION}); StyleGAN1 pickles are not supported")
    synthesis = net.state.get("components", {}).get("synthesis")
    func = synthesis.state.get("build_func_name") if isinstance(synthesis, TFNetworkState) else None
    if func not in SUPPORTED_SYNTHESIS_FUNCS:
        raise CheckpointError(f"{source}: synthesis network built by {func!r}; supported: "
                              f"{', '.join(sorted(SUPPORTED_SYNTHESIS_FUNCS))} (StyleGAN2 config E/F, StyleGAN2-ADA)")
    variables = collect_variables(net, source)
    init_kwargs = tf_init_kwargs(dict(net.state.get("static_kwargs") or {}), variables, source)
    state_dict = convert_variables(variables, source)
    return GeneratorCheckpoint(init_kwargs, state_dict, "tf-pickle")
