"""Which generator network a set of init kwargs describes: StyleGAN2(-ADA) or StyleGAN3 (T or R), as data.

StyleGAN2's init kwargs carry no family (files written before StyleGAN3 was supported stay valid);
StyleGAN3's say "family": "stylegan3".
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import torch

from stylegan2 import networks, networks_stylegan3
from stylegan2.errors import NetworkConfigError

FAMILIES: dict[str, type[torch.nn.Module]] = {
    "stylegan2": networks.Generator,
    networks_stylegan3.FAMILY: networks_stylegan3.Generator,
}


def family_of(init_kwargs: Mapping[str, Any]) -> str:
    """'stylegan2' or 'stylegan3'."""
    family = init_kwargs.get("family", "stylegan2")
    if family not in FAMILIES:
        raise NetworkConfigError(f"generator family {family!r} is not one of {', '.join(FAMILIES)}")
    return family


def make_generator(init_kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """The generator `init_kwargs` describe, with fresh weights."""
    kwargs = dict(init_kwargs)
    family = family_of(kwargs)
    if family == "stylegan2":
        kwargs.pop("family", None)
    return FAMILIES[family](**kwargs)


def architecture_of(init_kwargs: Mapping[str, Any]) -> str:
    """'stylegan2', 'stylegan3-t' or 'stylegan3-r' (R: 1x1 convolutions and radial filters, NVIDIA's train.py)."""
    if family_of(init_kwargs) == "stylegan2":
        return "stylegan2"
    synthesis = init_kwargs.get("synthesis_kwargs") or {}
    return "stylegan3-r" if synthesis.get("use_radial_filters") else "stylegan3-t"


def num_ws_of(init_kwargs: Mapping[str, Any]) -> int:
    """How many W+ rows the generator takes: 2 log2(R) - 2 for StyleGAN2, num_layers + 2 for StyleGAN3."""
    if family_of(init_kwargs) == "stylegan2":
        return 2 * int(math.log2(init_kwargs["img_resolution"])) - 2
    return int((init_kwargs.get("synthesis_kwargs") or {}).get("num_layers", 14)) + 2


def largest_activation(generator: torch.nn.Module, resolution: Optional[int] = None) -> int:
    """Elements per image of the generator's largest activation: StyleGAN2's output of the block `resolution` (None:
    the last), StyleGAN3's widest layer at its filtered leaky ReLU's upsampled rate (it has no lower stop)."""
    synthesis = generator.synthesis
    if isinstance(synthesis, networks.SynthesisNetwork):
        resolution = synthesis.check_resolution(resolution)
        return getattr(synthesis, f"b{resolution}").out_channels * resolution**2
    if resolution is not None and resolution != synthesis.img_resolution:
        raise NetworkConfigError(f"a {type(synthesis).__name__} has no block of {resolution} px to stop at")
    layers = [getattr(synthesis, name) for name in synthesis.layer_names]
    return max(layer.out_channels * (layer.in_size * layer.up_factor) ** 2 for layer in layers)
