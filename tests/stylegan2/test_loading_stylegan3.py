"""StyleGAN3 checkpoints: NVIDIA's pickles hostile, truncated or forged give one line and run nothing; sgsim's
safetensors round-trip them; settings are bounded before anything is built."""

from __future__ import annotations

import pickletools
from pathlib import Path

import pytest
import torch

from stylegan2 import CheckpointError, load_generator, save_generator
from stylegan2.errors import UnsafeCheckpointError
from stylegan2.families import architecture_of, make_generator, num_ws_of
from stylegan2.loading import read_checkpoint
from stylegan2.networks_stylegan3 import Generator as Generator3

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan3"
TINY_T = DATA / "sg3t_16.pkl"
PLACEHOLDER = "# NVIDIA source omitted from sgsim test data (licence)"


def render(G) -> torch.Tensor:
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(3))
    c = torch.eye(G.c_dim)[:2] if G.c_dim else torch.zeros([2, 0])
    with torch.no_grad():
        return G(z, c)


def test_the_fixtures_are_persistence_records_without_nvidias_source():
    """NVIDIA's record layout (persistence reconstructor, module_src), with the source replaced by a placeholder."""
    strings = [arg for _, arg, _ in pickletools.genops(TINY_T.read_bytes()) if isinstance(arg, str)]
    assert "_reconstruct_persistent_obj" in strings and "torch_utils.persistence" in strings
    assert PLACEHOLDER in strings and not any("class SynthesisLayer" in text for text in strings)


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.97, 0.9999])
def test_a_truncated_stylegan3_pickle_is_one_line(tmp_path, fraction):
    data = TINY_T.read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_generator(path)
    assert "\n" not in str(error.value)


def test_a_stylegan3_pickle_whose_reconstructor_is_swapped_runs_nothing(tmp_path):
    """NVIDIA's persistence reconstructor renamed to builtins.exec (the name padded to the same length, so every
    other byte of the real pickle stays valid): refused by name before anything is called."""
    data = TINY_T.read_bytes()
    hostile = data.replace(b"\x17torch_utils.persistence\x94\x8c\x1b_reconstruct_persistent_obj",
                           b"\x17builtins               \x94\x8c\x1bexec                       ", 1)
    assert hostile != data
    path = tmp_path / "hostile.pkl"
    path.write_bytes(hostile)
    with pytest.raises(UnsafeCheckpointError, match="nothing") as error:
        load_generator(path)
    assert "\n" not in str(error.value)


def test_a_stylegan3_state_that_does_not_fit_its_settings_is_refused(tmp_path):
    checkpoint = read_checkpoint(TINY_T)
    checkpoint.init_kwargs["synthesis_kwargs"]["channel_max"] = 8  # narrower layers than the weights
    from stylegan2.loading.load import build_generator

    with pytest.raises(CheckpointError, match="does not match the generator .*wrong shape"):
        build_generator(checkpoint, "forged")


@pytest.mark.parametrize("name,value,message", [
    ("num_layers", 10**6, r"num_layers=1000000 is not an integer"),
    ("margin_size", 10**7, r"margin_size=10000000 is not an integer"),
    ("filter_size", 0, r"filter_size=0 is not an integer"),
    ("conv_kernel", "3", r"conv_kernel=3 is not an integer"),
    ("first_cutoff", float("nan"), "cannot build a generator"),
    ("teleport", True, "cannot build a generator"),
])
def test_forged_stylegan3_settings_are_refused_before_allocation(tmp_path, name, value, message):
    checkpoint = read_checkpoint(TINY_T)
    checkpoint.init_kwargs["synthesis_kwargs"][name] = value
    from stylegan2.loading.load import build_generator

    with pytest.raises(CheckpointError, match=message):
        build_generator(checkpoint, "forged")


def test_unknown_stylegan3_kwargs_in_a_pickle_are_explained(tmp_path):
    from stylegan2.loading.nvidia import contract_stylegan3_kwargs

    raw = {"z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 16, "img_channels": 3, "warp_drive": 9}
    with pytest.raises(CheckpointError, match="settings sgsim does not know.*warp_drive.*allowed"):
        contract_stylegan3_kwargs(raw, "x.pkl")


def test_stylegan3_round_trips_through_safetensors(tmp_path):
    G = load_generator(TINY_T)
    G.synthesis.set_transform((0.1, 0.0), 10.0)
    path = save_generator(G, tmp_path / "g.safetensors")
    loaded = load_generator(path)
    assert loaded.init_kwargs == G.init_kwargs and architecture_of(loaded.init_kwargs) == "stylegan3-t"
    assert torch.equal(render(loaded), render(G))
    assert loaded.metadata == {"dataset": "tiny-16"}


def test_families_know_the_rows_and_kind():
    G = Generator3(8, 0, 8, 16, 3, {"num_layers": 1}, {"channel_base": 64, "channel_max": 8, "num_layers": 4,
                                                       "conv_kernel": 1, "use_radial_filters": True})
    assert G.num_ws == num_ws_of(G.init_kwargs) == 6
    assert architecture_of(G.init_kwargs) == "stylegan3-r"
    assert make_generator(G.init_kwargs).init_kwargs == G.init_kwargs
