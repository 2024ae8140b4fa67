"""G.metadata: what a generator file says the generator is (its training set), kept through save_generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylegan2 import Generator, load_generator, save_generator
from stylegan2.loading.nvidia import training_set_metadata

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan2"


def test_an_nvidia_snapshot_names_its_training_set_and_a_saved_copy_keeps_it(tmp_path):
    G = load_generator(DATA / "ada_skip32.pkl")  # training_set_kwargs.path 'datasets/sgsim-fixture.zip'
    assert G.metadata == {"dataset": "sgsim-fixture"}
    assert load_generator(save_generator(G, tmp_path / "g.safetensors")).metadata == {"dataset": "sgsim-fixture"}


def test_a_generator_with_nothing_to_say_saves_and_loads_empty_metadata(tmp_path):
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 32, "channel_max": 8})
    assert load_generator(save_generator(G, tmp_path / "g.safetensors")).metadata == {}


@pytest.mark.parametrize("kwargs, expected", [
    ({"path": "~/datasets/ffhq-1024.zip"}, {"dataset": "ffhq-1024"}),
    ({"path": "C:\\data\\metfaces\\"}, {"dataset": "metfaces"}),
    ({"path": ""}, {}),
    ({"resolution": 32}, {}),
    (None, {}),
])
def test_the_training_set_name_is_the_last_part_of_its_path(kwargs, expected):
    assert training_set_metadata({"training_set_kwargs": kwargs}) == expected
