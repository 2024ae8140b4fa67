"""Every checkpoint format, written here in its real on-disk layout without the reference code, loads bit-identically.

NVIDIA pickles are produced with a stand-in `torch_utils.persistence._reconstruct_persistent_obj` and
`dnnlib.util.EasyDict`, TensorFlow pickles with a stand-in `dnnlib.tflib.network.Network`; both live in
sys.modules only while a test pickles. Their stored module source would create a marker file if exec'd.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from stylegan2 import CheckpointError, Generator, load_generator, save_generator
from stylegan2.loading import native, read_checkpoint
from stylegan2.loading.rosinality import rosinality_state_dict
from tolerances import assert_image_close, parity_tolerance

KWARGS = {
    "z_dim": 32, "c_dim": 0, "w_dim": 32, "img_resolution": 16, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 256, "channel_max": 32},
}
# KWARGS with every option written out (ADA's defaults), as the readers return them.
FULL_KWARGS = {
    "z_dim": 32, "c_dim": 0, "w_dim": 32, "img_resolution": 16, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2, "embed_features": None, "layer_features": None, "activation": "lrelu",
                       "lr_multiplier": 0.01, "w_avg_beta": 0.995, "label_concat": False},
    "synthesis_kwargs": {"channel_base": 256, "channel_max": 32, "num_fp16_res": 0, "conv_clamp": None,
                         "architecture": "skip", "resample_filter": [1, 3, 3, 1], "use_noise": True,
                         "fp16_channels_last": False},
}
BUFFERS = ("w_avg", "noise_const", "resample_filter")


def make_generator(random_weights, seed: int, kwargs: dict = KWARGS) -> Generator:
    """A small generator with seeded random weights; FIR filter buffers stay as built."""
    G = Generator(**copy.deepcopy(kwargs))
    template = G.state_dict()
    weights = random_weights(template, seed)
    weights.update({key: value for key, value in template.items() if key.endswith("resample_filter")})
    G.load_state_dict(weights)
    return G.eval()


def render(G, c_dim: int = 0) -> torch.Tensor:
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(7))
    c = torch.eye(c_dim)[:2] if c_dim else torch.zeros([2, 0])
    with torch.no_grad():
        return G(z, c, noise_mode="const")


def assert_same_state(actual: dict, expected: dict, atol: float = 0.0) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=atol, msg=key)


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "module_src_was_executed"


@pytest.fixture
def reference_modules(monkeypatch, marker):
    """Stand-ins for NVIDIA's torch_utils.persistence, dnnlib.util and dnnlib.tflib.network, for pickling only."""
    def reconstruct(meta):  # NVIDIA's would exec meta['module_src']; ours must never even be called
        marker.write_text("reconstruct called")

    class EasyDict(dict):  # as dnnlib.util.EasyDict: attribute access to items
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

        def __setattr__(self, name, value):
            self[name] = value

    class Network:  # as dnnlib.tflib.network.Network: pickles its state dict
        def __init__(self, state):
            self.__dict__["_state"] = state

        def __getstate__(self):
            return self._state

        def __setstate__(self, state):
            marker.write_text("Network.__setstate__ called")

    modules = {name: types.ModuleType(name) for name in
               ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "dnnlib.tflib", "dnnlib.tflib.network")}
    for name, attribute, value in (("torch_utils.persistence", "_reconstruct_persistent_obj", reconstruct),
                                   ("dnnlib.util", "EasyDict", EasyDict), ("dnnlib.tflib.network", "Network", Network)):
        value.__module__, value.__qualname__ = name, attribute
        setattr(modules[name], attribute, value)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(reconstruct=reconstruct, EasyDict=EasyDict, Network=Network,
                                 module_src=f"open({str(marker)!r}, 'w')\n")


# --- NVIDIA PyTorch pickles ------------------------------------------------------------------------------------

class Persistent:
    """Pickles exactly as a torch_utils.persistence object: _reconstruct_persistent_obj(meta)."""

    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def persistent_module(refs, class_name: str, node: dict, init_kwargs: dict | None = None) -> Persistent:
    """A module's __dict__ as NVIDIA pickles it: parameters, buffers, submodules, init kwargs, numpy gains."""
    parameters, buffers, modules = OrderedDict(), OrderedDict(), OrderedDict()
    for name, value in node.items():
        if isinstance(value, dict):
            modules[name] = persistent_module(refs, "Layer", value)
        elif name in BUFFERS:
            buffers[name] = value.clone()
        else:
            parameters[name] = torch.nn.Parameter(value.clone(), requires_grad=False)
    state = {"training": False, "_parameters": parameters, "_buffers": buffers, "_non_persistent_buffers_set": set(),
             "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(), "_modules": modules,
             "_init_args": (), "_init_kwargs": init_kwargs or {}, "weight_gain": np.float64(1 / math.sqrt(32))}
    meta = {"type": "class", "version": 6, "module_src": refs.module_src, "class_name": class_name, "state": state}
    return Persistent(refs.reconstruct, meta)


def module_tree(state_dict: dict) -> dict:
    root: dict = {}
    for key, tensor in state_dict.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = tensor
    return root


def ada_init_kwargs(refs, kwargs: dict) -> dict:
    """Generator _init_kwargs as ADA's train.py builds them: a dict with EasyDict sub-kwargs."""
    out = dict(kwargs)
    out["mapping_kwargs"] = refs.EasyDict(kwargs["mapping_kwargs"])
    out["synthesis_kwargs"] = refs.EasyDict(kwargs["synthesis_kwargs"])
    return out


def write_nvidia_pickle(path: Path, refs, networks: dict, protocol: int = 4) -> None:
    """networks: name -> (class_name, state_dict, init_kwargs); plus the snapshot's other entries."""
    data = {name: persistent_module(refs, class_name, module_tree(sd), init_kwargs)
            for name, (class_name, sd, init_kwargs) in networks.items()}
    data.update(training_set_kwargs=refs.EasyDict(path="ffhq.zip", resolution=16), augment_pipe=None)
    path.write_bytes(pickle.dumps(data, protocol=protocol))


@pytest.mark.parametrize("protocol", [3, 4])  # ADA ran on Python 3.7 (protocol 3); later pickles use 4
def test_nvidia_pickle_loads_bit_identically(tmp_path, reference_modules, random_weights, marker, protocol):
    G_ema, G = make_generator(random_weights, 1), make_generator(random_weights, 2)
    kwargs = ada_init_kwargs(reference_modules, KWARGS)
    path = tmp_path / "network-snapshot.pkl"
    write_nvidia_pickle(path, reference_modules, {"G_ema": ("Generator", G_ema.state_dict(), kwargs),
                                                   "G": ("Generator", G.state_dict(), kwargs),
                                                   "D": ("Discriminator", {"b4.fc.weight": torch.ones(2, 2)}, {})},
                        protocol)
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "nvidia-pickle" and checkpoint.init_kwargs == FULL_KWARGS
    assert_same_state(checkpoint.state_dict, G_ema.state_dict())
    assert_same_state(read_checkpoint(path, network="G").state_dict, G.state_dict())
    loaded = load_generator(path)
    assert not loaded.training
    assert torch.equal(render(loaded), render(G_ema))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="'D' is a Discriminator, not a generator; choose one of G, G_ema"):
        read_checkpoint(path, network="D")


def test_stylegan3_flattened_kwargs_get_stylegan3_defaults(tmp_path, reference_modules, random_weights):
    G = make_generator(random_weights, 1)
    # SG3's train.py: Generator(z_dim, w_dim, mapping_kwargs, channel_base, channel_max, fused_modconv_default, ...)
    sg3_kwargs = {"z_dim": 32, "w_dim": 32, "mapping_kwargs": reference_modules.EasyDict(num_layers=2),
                  "channel_base": 256, "channel_max": 32, "fused_modconv_default": "inference_only",
                  "c_dim": 0, "img_resolution": 16, "img_channels": 3}
    path = tmp_path / "sg3.pkl"
    write_nvidia_pickle(path, reference_modules, {"G_ema": ("Generator", G.state_dict(), sg3_kwargs)})
    kwargs = read_checkpoint(path).init_kwargs
    # NVlabs/stylegan3 networks_stylegan2 defaults: w_avg_beta 0.998, num_fp16_res 4, conv_clamp 256
    assert kwargs["mapping_kwargs"]["w_avg_beta"] == 0.998
    assert kwargs["synthesis_kwargs"]["num_fp16_res"] == 4 and kwargs["synthesis_kwargs"]["conv_clamp"] == 256
    assert "fused_modconv_default" not in kwargs["synthesis_kwargs"]
    assert_same_state(read_checkpoint(path).state_dict, G.state_dict())


def test_a_generator_of_another_kind_is_refused(tmp_path, reference_modules):
    odd_state = {"synthesis.stem.weight": torch.zeros(4, 2), "mapping.fc0.weight": torch.zeros(2, 2)}
    path = tmp_path / "other.pkl"
    write_nvidia_pickle(path, reference_modules, {"G_ema": ("Generator", odd_state, dict(KWARGS))})
    with pytest.raises(CheckpointError, match="neither a StyleGAN2 nor a StyleGAN3 generator .*stem"):
        load_generator(path)


def test_unknown_generator_kwarg_is_explained(tmp_path, reference_modules, random_weights):
    G = make_generator(random_weights, 1)
    kwargs = ada_init_kwargs(reference_modules, KWARGS)
    kwargs["synthesis_kwargs"]["channels_last_everywhere"] = True
    path = tmp_path / "odd.pkl"
    write_nvidia_pickle(path, reference_modules, {"G_ema": ("Generator", G.state_dict(), kwargs)})
    with pytest.raises(CheckpointError, match="channels_last_everywhere.*not support"):
        load_generator(path)


def test_state_that_does_not_fit_its_kwargs_is_refused(tmp_path, reference_modules, random_weights):
    G = make_generator(random_weights, 1)
    state = G.state_dict()
    del state["synthesis.b8.conv0.weight"]
    path = tmp_path / "broken.pkl"
    write_nvidia_pickle(path, reference_modules,
                        {"G_ema": ("Generator", state, ada_init_kwargs(reference_modules, KWARGS))})
    with pytest.raises(CheckpointError, match=r"missing: synthesis\.b8\.conv0\.weight"):
        load_generator(path)


# --- TensorFlow pickles ------------------------------------------------------------------------------------------

def tf_conv(weight: torch.Tensor, flipped: bool) -> np.ndarray:
    """PyTorch [out, in, kh, kw] -> TF [kh, kw, in, out], flipped as TF's up-sampling conv stores it."""
    kernel = weight.numpy().transpose(2, 3, 1, 0)
    return np.ascontiguousarray(kernel[::-1, ::-1] if flipped else kernel)


def tf_variables(state_dict: dict) -> tuple[list, list, list]:
    """(Gs, mapping, synthesis) variables in StyleGAN2 TF naming, the inverse of docs/reference.md#tensorflow-pickles."""
    top, mapping, synthesis = [], [], []
    for key, tensor in state_dict.items():
        value, parts = tensor.numpy(), key.split(".")
        if key == "mapping.w_avg":
            top.append(("dlatent_avg", value))
        elif key == "mapping.label_concat.weight":
            mapping.append(("LabelConcat/weight", value))
        elif parts[0] == "mapping":
            mapping.append((f"Dense{parts[1][2:]}/{parts[2]}", value.T.copy() if parts[2] == "weight" else value))
        elif key.endswith("resample_filter"):
            continue
        elif key == "synthesis.b4.const":
            synthesis.append(("4x4/Const/const", value[None]))
        else:
            res, layer, param = int(parts[1][1:]), parts[2], ".".join(parts[3:])
            if param == "noise_const":
                index = 0 if res == 4 else 2 * int(math.log2(res)) - (5 if layer == "conv0" else 4)
                synthesis.append((f"noise{index}", value[None, None]))
                continue
            tf_layer = {"conv0": "Conv0_up", "conv1": "Conv" if res == 4 else "Conv1", "torgb": "ToRGB",
                        "skip": "Skip"}[layer]
            tf_param, tf_value = {
                "weight": ("weight", lambda: tf_conv(tensor, layer in ("conv0", "skip"))),
                "bias": ("bias", lambda: value), "noise_strength": ("noise_strength", lambda: value),
                "affine.weight": ("mod_weight", lambda: value.T.copy()),
                "affine.bias": ("mod_bias", lambda: value - 1),
            }[param]
            synthesis.append((f"{res}x{res}/{tf_layer}/{tf_param}", tf_value()))
    return top, mapping, synthesis


STATIC_KWARGS = {"latent_size": 32, "label_size": 0, "dlatent_size": 32, "resolution": 16, "num_channels": 3,
                 "fmap_base": 128, "fmap_max": 32, "mapping_layers": 2, "mapping_fmaps": 32,
                 # harmless extras community pickles carry
                 "truncation_psi": 0.5, "randomize_noise": False, "resolution_w": 16, "resolution_h": 16}


def tf_network(refs, name: str, func: str, variables: list, static_kwargs: dict, components: dict | None = None):
    return refs.Network({"version": 4, "name": name, "static_kwargs": static_kwargs, "components": components or {},
                         "build_module_src": refs.module_src, "build_func_name": func, "variables": variables})


def tf_generator(refs, state_dict: dict, static_kwargs: dict):
    top, mapping, synthesis = tf_variables(state_dict)
    return tf_network(refs, "G", "G_main", top, static_kwargs, {
        "mapping": tf_network(refs, "G_mapping", "G_mapping", mapping, static_kwargs),
        "synthesis": tf_network(refs, "G_synthesis", "G_synthesis_stylegan2", synthesis, static_kwargs),
    })


def write_tf_pickle(path: Path, refs, G_state: dict, Gs_state: dict, static_kwargs: dict = STATIC_KWARGS) -> None:
    D = tf_network(refs, "D", "D_stylegan2", [("4x4/Conv/weight", np.zeros((3, 3, 2, 2), np.float32))], {})
    data = (tf_generator(refs, G_state, static_kwargs), D, tf_generator(refs, Gs_state, static_kwargs))
    path.write_bytes(pickle.dumps(data, protocol=4))


@pytest.mark.parametrize("architecture", ["skip", "resnet"])  # resnet adds the flipped 1x1 Skip convs
def test_tensorflow_pickle_maps_to_nvidia_names(tmp_path, reference_modules, random_weights, marker, architecture):
    kwargs = copy.deepcopy(KWARGS)
    kwargs["synthesis_kwargs"]["architecture"] = architecture
    Gs, G = make_generator(random_weights, 3, kwargs), make_generator(random_weights, 4, kwargs)
    path = tmp_path / "stylegan2-config-f.pkl"
    write_tf_pickle(path, reference_modules, G.state_dict(), Gs.state_dict(),
                    {**STATIC_KWARGS, "architecture": architecture})
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "tf-pickle"
    expected_kwargs = copy.deepcopy(FULL_KWARGS)
    expected_kwargs["mapping_kwargs"]["layer_features"] = 32  # read from the Dense0 shape
    expected_kwargs["synthesis_kwargs"]["architecture"] = architecture
    assert checkpoint.init_kwargs == expected_kwargs
    stored = {key: value for key, value in Gs.state_dict().items() if not key.endswith("resample_filter")}
    assert_same_state(checkpoint.state_dict, stored, atol=1e-6)  # mod_bias - 1 + 1 may round by one ulp
    assert_same_state(read_checkpoint(path, network="G").state_dict,
                      {key: value for key, value in G.state_dict().items() if not key.endswith("resample_filter")},
                      atol=1e-6)
    # mod_bias may differ by an ulp (above), so the images agree to float32 rounding of the network, in PSNR.
    assert_image_close(render(load_generator(path)), render(Gs), parity_tolerance(Gs))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="'D' is not a generator there"):
        read_checkpoint(path, network="D")


def test_tensorflow_label_concat(tmp_path, reference_modules, random_weights):
    kwargs = copy.deepcopy(KWARGS)
    kwargs["c_dim"] = 3
    kwargs["mapping_kwargs"]["label_concat"] = True
    Gs = make_generator(random_weights, 5, kwargs)
    assert Gs.state_dict()["mapping.label_concat.weight"].shape == (3, 32)
    path = tmp_path / "wikiart.pkl"
    write_tf_pickle(path, reference_modules, Gs.state_dict(), Gs.state_dict(), {**STATIC_KWARGS, "label_size": 3})
    loaded = load_generator(path)
    assert loaded.init_kwargs["mapping_kwargs"]["label_concat"] is True
    assert_image_close(render(loaded, 3), render(Gs, 3), parity_tolerance(Gs))  # as in test_tensorflow_pickle_maps_to_nvidia_names


@pytest.mark.parametrize("extra, message", [
    ({"mystery_option": 1}, "unknown TensorFlow static kwargs mystery_option"),
    ({"fmap_decay": 0.5}, "fmap_decay=0.5 changes the architecture"),
    ({"resolution_w": 32}, "non-square generators are not supported"),
])
def test_tensorflow_static_kwargs_are_checked(tmp_path, reference_modules, random_weights, extra, message):
    state = make_generator(random_weights, 3).state_dict()
    path = tmp_path / "community.pkl"
    write_tf_pickle(path, reference_modules, state, state, {**STATIC_KWARGS, **extra})
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


# --- rosinality ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("zip_format", [True, False])  # torch.save before 1.6 wrote the legacy non-zip format
def test_rosinality_converted_checkpoint(tmp_path, random_weights, zip_format):
    G = make_generator(random_weights, 6)
    path = tmp_path / "landscape.pt"
    torch.save({"g_ema": rosinality_state_dict(G.state_dict()), "latent_avg": G.state_dict()["mapping.w_avg"]}, path,
               _use_new_zipfile_serialization=zip_format)
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "rosinality-pt"
    kwargs = checkpoint.init_kwargs
    assert (kwargs["img_resolution"], kwargs["z_dim"], kwargs["w_dim"]) == (16, 32, 32)
    assert kwargs["mapping_kwargs"]["num_layers"] == 2
    assert (kwargs["synthesis_kwargs"]["channel_base"], kwargs["synthesis_kwargs"]["channel_max"]) == (256, 32)
    assert_same_state(checkpoint.state_dict,
                      {key: value for key, value in G.state_dict().items() if not key.endswith("resample_filter")})
    assert torch.equal(render(load_generator(path)), render(G))


def test_rosinality_training_checkpoint_estimates_w_avg(tmp_path, random_weights):
    G, g = make_generator(random_weights, 6), make_generator(random_weights, 7)
    path = tmp_path / "010000.pt"
    torch.save({"g": rosinality_state_dict(g.state_dict()), "d": {"convs.0.0.weight": torch.zeros(1)},
                "g_ema": rosinality_state_dict(G.state_dict()), "g_optim": {"state": {}}, "d_optim": {"state": {}},
                "args": argparse.Namespace(size=16, lr=0.002), "ada_aug_p": 0.0}, path)
    loaded = load_generator(path)
    assert torch.equal(render(loaded, 0), render(G))  # noise_mode const and psi 1 never use w_avg
    z = torch.randn([20000, 32], generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        independent_mean = G.mapping(z, torch.zeros([20000, 0]), truncation_psi=1)[:, 0].mean(dim=0)
    torch.testing.assert_close(loaded.mapping.w_avg, independent_mean, rtol=0, atol=0.05 * independent_mean.abs().max())
    assert_same_state(read_checkpoint(path, network="G").state_dict,
                      {key: value for key, value in g.state_dict().items()
                       if not key.endswith("resample_filter") and key != "mapping.w_avg"})


# --- our safetensors format ------------------------------------------------------------------------------------

def test_native_round_trip_is_bit_identical(tmp_path, random_weights):
    G = make_generator(random_weights, 8)
    path = save_generator(G, tmp_path / "out" / "ffhq.safetensors")
    with safe_open(str(path), framework="pt") as stream:
        metadata = stream.metadata()
    assert metadata["format"] == "sgsim-stylegan2" and metadata["format_version"] == "1"
    assert json.loads(metadata["init_kwargs"]) == json.loads(json.dumps(G.init_kwargs))
    loaded = load_generator(path)
    assert_same_state(loaded.state_dict(), G.state_dict())
    assert torch.equal(render(loaded), render(G))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ffhq.safetensors"]  # no temp file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_native_save_is_atomic(tmp_path, random_weights, monkeypatch):
    path = tmp_path / "g.safetensors"
    save_generator(make_generator(random_weights, 8), path)
    before = path.read_bytes()

    def failing_save(tensors, filename, metadata):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(native, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_generator(make_generator(random_weights, 9), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def test_format_comes_from_content_not_extension(tmp_path, random_weights):
    G = make_generator(random_weights, 8)
    native_as_pkl = save_generator(G, tmp_path / "model.pkl")
    rosinality_as_safetensors = tmp_path / "model.safetensors"
    torch.save({"g_ema": rosinality_state_dict(G.state_dict()), "latent_avg": G.state_dict()["mapping.w_avg"]},
               rosinality_as_safetensors)
    assert read_checkpoint(native_as_pkl).format == "safetensors"
    assert read_checkpoint(rosinality_as_safetensors).format == "rosinality-pt"
