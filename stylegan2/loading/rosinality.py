"""rosinality/stylegan2-pytorch checkpoints: keys renamed to NVIDIA's, the architecture inferred from tensor shapes.

Files are torch.save dicts: {'g_ema', 'latent_avg'} (converted from TF) or {g, d, g_ema, g_optim, d_optim, args,
ada_aug_p} (training); a bare generator state dict is accepted too. No flips are needed (docs/reference.md#rosinality-files).
rosinality_state_dict maps back, for the decoder that an e4e / pSp checkpoint carries.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import torch

from stylegan2.errors import CheckpointError
from stylegan2.loading.checkpoint import GeneratorCheckpoint, generator_kwargs, noise_const_key

NETWORK_KEYS = {"G_ema": "g_ema", "G": "g"}
# rosinality's Generator fixes these: EqualLinear(lr_mul=lr_mlp=0.01) mapping, 'skip' outputs, blur_kernel [1,3,3,1].
LR_MLP = 0.01
BLUR_KERNEL = [1, 3, 3, 1]

_SAME: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor
# key inside a StyledConv / ToRGB -> (NVIDIA name, reshape)
_LAYER_PARAMS: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "conv.weight": ("weight", lambda tensor: tensor[0]),  # [1, out, in, k, k]
    "conv.modulation.weight": ("affine.weight", _SAME),
    "conv.modulation.bias": ("affine.bias", _SAME),
    "noise.weight": ("noise_strength", lambda tensor: tensor.reshape(())),  # [1]
    "activate.bias": ("bias", _SAME),
    "bias": ("bias", lambda tensor: tensor.reshape(-1)),  # ToRGB bias [1, C, 1, 1]
}
# FIR buffers rosinality derives from blur_kernel; checked against BLUR_KERNEL, then rebuilt by our Generator.
_FILTER_BUFFERS = ("conv.blur.kernel", "upsample.kernel")


def _layer_prefix(name: str) -> tuple[str, str] | None:
    """(NVIDIA layer prefix, rest of the key) for a key of a StyledConv or ToRGB."""
    fixed = {"conv1.": "synthesis.b4.conv1.", "to_rgb1.": "synthesis.b4.torgb."}
    for theirs, ours in fixed.items():
        if name.startswith(theirs):
            return ours, name[len(theirs):]
    match = re.fullmatch(r"convs\.(\d+)\.(.+)", name)
    if match:
        index = int(match.group(1))  # convs.{2(k-3)} / convs.{2(k-3)+1} are conv0 / conv1 of b{2^k}
        return f"synthesis.b{2 ** (index // 2 + 3)}.conv{index % 2}.", match.group(2)
    match = re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", name)
    if match:
        return f"synthesis.b{2 ** (int(match.group(1)) + 3)}.torgb.", match.group(2)
    return None


def _check_filter(name: str, kernel: torch.Tensor, source: str) -> None:
    expected = torch.tensor(BLUR_KERNEL, dtype=torch.float64)
    expected = torch.outer(expected, expected)
    kernel = kernel.double()
    if kernel.shape != expected.shape or not torch.allclose(kernel / kernel.sum(), expected / expected.sum()):
        raise CheckpointError(f"{source}: {name} is not the [1, 3, 3, 1] blur kernel; other kernels are not supported")


def convert_state_dict(generator: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """rosinality Generator state dict -> NVIDIA keys; an unknown key raises."""
    state_dict = {}
    for name, tensor in generator.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{source}: {name} is a {type(tensor).__name__}, expected a tensor")
        style = re.fullmatch(r"style\.(\d+)\.(weight|bias)", name)
        noise = re.fullmatch(r"noises\.noise_(\d+)", name)
        layer = _layer_prefix(name)
        if style:  # style.0 is PixelNorm, style.{i+1} is mapping.fc{i}
            state_dict[f"mapping.fc{int(style.group(1)) - 1}.{style.group(2)}"] = tensor
        elif noise:
            state_dict[noise_const_key(int(noise.group(1)))] = tensor[0, 0]
        elif name == "input.input":
            state_dict["synthesis.b4.const"] = tensor[0]
        elif layer and layer[1] in _FILTER_BUFFERS:
            _check_filter(name, tensor, source)
        elif layer and layer[1] in _LAYER_PARAMS:
            ours, reshape = _LAYER_PARAMS[layer[1]]
            state_dict[layer[0] + ours] = reshape(tensor)
        else:
            raise CheckpointError(f"{source}: key {name!r} is not part of a rosinality StyleGAN2 generator")
    return state_dict


def infer_channels(widths: dict[int, int], source: str) -> tuple[int, int]:
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == widths[res] at every resolution."""
    channel_max = max(widths.values())
    top = max(widths)
    candidates = sorted({width * res for res, width in widths.items() if width < channel_max})
    candidates = candidates or [max(32768, channel_max * top)]  # every layer at channel_max: any large base works
    for base in candidates:
        if all(min(base // res, channel_max) == width for res, width in widths.items()):
            return base, channel_max
    raise CheckpointError(f"{source}: channel widths {widths} do not follow min(channel_base // res, channel_max); "
                          "this generator's layout is not supported")


def rosinality_init_kwargs(generator: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """Our Generator's init kwargs from a rosinality state dict's shapes."""
    required = ("style.1.weight", "input.input", "to_rgb1.conv.weight")
    missing = [key for key in required if key not in generator]
    if missing:
        raise CheckpointError(f"{source}: the generator lacks {', '.join(missing)}; not a rosinality StyleGAN2 generator")
    n_mlp = sum(1 for key in generator if re.fullmatch(r"style\.\d+\.weight", key))
    n_rgbs = sum(1 for key in generator if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", key))
    widths = {4: generator["input.input"].shape[1]}
    widths.update({2 ** (k + 3): generator[f"convs.{2 * k}.conv.weight"].shape[1] for k in range(n_rgbs)})
    channel_base, channel_max = infer_channels(widths, source)
    style_dim = generator["style.1.weight"].shape[1]
    return generator_kwargs(
        source, z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=2 ** (n_rgbs + 2),
        img_channels=generator["to_rgb1.conv.weight"].shape[1],
        mapping={"num_layers": n_mlp, "layer_features": style_dim, "lr_multiplier": LR_MLP},
        synthesis={"channel_base": channel_base, "channel_max": channel_max, "architecture": "skip",
                   "resample_filter": BLUR_KERNEL},
    )


def read_rosinality(data: Any, network: str, source: str) -> GeneratorCheckpoint:
    """The generator `network` ('G_ema' = g_ema, 'G' = g) of a loaded rosinality checkpoint dict."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} holds a {type(data).__name__}; expected a rosinality checkpoint dict")
    if "style.1.weight" in data:  # a bare generator state dict
        generator = data
    elif network in NETWORK_KEYS and NETWORK_KEYS[network] in data:
        generator = data[NETWORK_KEYS[network]]
    else:
        raise CheckpointError(
            f"{source} is a torch.save file without the generator {network!r} "
            f"(rosinality keys: {', '.join(f'{ours} = {theirs!r}' for ours, theirs in NETWORK_KEYS.items())}); "
            f"it holds {', '.join(sorted(map(str, data))[:8]) or 'nothing'}"
        )
    if not isinstance(generator, dict):
        raise CheckpointError(f"{source}: the generator is a {type(generator).__name__}, expected a state dict")
    init_kwargs = rosinality_init_kwargs(generator, source)
    state_dict = convert_state_dict(generator, source)
    if isinstance(data.get("latent_avg"), torch.Tensor):
        state_dict["mapping.w_avg"] = data["latent_avg"].reshape(-1)
    return GeneratorCheckpoint(init_kwargs, state_dict, "rosinality-pt")


def rosinality_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our Generator's state dict under rosinality/stylegan2-pytorch's keys: the inverse of convert_state_dict (the
    decoder an e4e / pSp checkpoint carries). w_avg is left out (rosinality keeps it beside, as latent_avg)."""
    blur = torch.outer(torch.tensor(BLUR_KERNEL, dtype=torch.float32), torch.tensor(BLUR_KERNEL, dtype=torch.float32))
    blur = blur / blur.sum() * 4  # make_kernel, scaled by the up-sampling factor squared as rosinality stores it
    out = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if key == "mapping.w_avg" or key.endswith("resample_filter"):
            continue
        if parts[0] == "mapping":
            out[f"style.{int(parts[1][2:]) + 1}.{parts[2]}"] = tensor
        elif key == "synthesis.b4.const":
            out["input.input"] = tensor[None]
        else:
            res, layer, param = int(parts[1][1:]), parts[2], ".".join(parts[3:])
            k = int(math.log2(res))
            prefix = {"conv0": f"convs.{2 * (k - 3)}", "conv1": f"convs.{2 * (k - 3) + 1}",
                      "torgb": f"to_rgbs.{k - 3}"}[layer] if res > 4 else {"conv1": "conv1", "torgb": "to_rgb1"}[layer]
            if param == "noise_const":
                index = 0 if res == 4 else 2 * k - (5 if layer == "conv0" else 4)
                out[f"noises.noise_{index}"] = tensor[None, None]
                continue
            name, value = {
                "weight": ("conv.weight", lambda: tensor[None]),
                "affine.weight": ("conv.modulation.weight", lambda: tensor),
                "affine.bias": ("conv.modulation.bias", lambda: tensor),
                "noise_strength": ("noise.weight", lambda: tensor.reshape(1)),
                "bias": ("bias", lambda: tensor.reshape(1, -1, 1, 1)) if layer == "torgb"
                else ("activate.bias", lambda: tensor),
            }[param]
            out[f"{prefix}.{name}"] = value()
            if res > 4 and param == "weight" and layer == "conv0":
                out[f"{prefix}.conv.blur.kernel"] = blur
            if res > 4 and param == "weight" and layer == "torgb":
                out[f"{prefix}.upsample.kernel"] = blur
    return out
