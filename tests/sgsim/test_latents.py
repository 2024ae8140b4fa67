"""The latent file format: which array a file (or FILE:KEY) means, its noise buffers, and damaged files refused."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from sgsim.errors import SgsimError
from sgsim.latents import NOISE_PREFIX, read_latent_file, split_latent_spec, write_latent_file


def test_latent_files_are_read_by_key_or_as_their_only_array(tmp_path):
    np.savez(tmp_path / "edit.npz", source=np.ones((4, 5)), edited=np.stack([np.full((4, 5), 2.0), np.full((4, 5), 3.0)]))
    np.savez(tmp_path / "projected_w.npz", w=np.full((1, 4, 5), 2.0), **{"noise.b4.conv1.noise_const": np.ones((4, 4))})
    np.savez(tmp_path / "single.npz", anything=np.full(5, 3.0))
    np.savez(tmp_path / "two.npz", a=np.zeros(5), b=np.zeros(5))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    edit = read_latent_file(tmp_path / "edit.npz")  # an edit continues from its first edited latent
    assert edit.key == "edited[0]" and edit.latent.shape == (4, 5) and edit.latent.sum() == 40
    assert read_latent_file(f"{tmp_path / 'edit.npz'}:edited[1]").latent.sum() == 60
    assert read_latent_file(f"{tmp_path / 'edit.npz'}:source").latent.sum() == 20
    stored = read_latent_file(tmp_path / "projected_w.npz")
    assert stored.latent.shape == (1, 4, 5) and list(stored.noise) == ["b4.conv1.noise_const"] and stored.key == "w"
    assert read_latent_file(tmp_path / "single.npz").latent[0] == 3.0
    assert read_latent_file(f"{tmp_path / 'two.npz'}:b").key == "b"
    with pytest.raises(SgsimError, match=r"none of them named.*two.npz:KEY"):
        read_latent_file(tmp_path / "two.npz")
    with pytest.raises(SgsimError, match="broken.npz is not a readable"):
        read_latent_file(tmp_path / "broken.npz")
    with pytest.raises(SgsimError, match="not found"):
        read_latent_file(tmp_path / "missing.npz")
    with pytest.raises(SgsimError, match=r"has no latent 'nope'; it holds \['edited', 'source'\]"):
        read_latent_file(f"{tmp_path / 'edit.npz'}:nope")
    with pytest.raises(SgsimError, match=r"no row 2; rows are 0..1"):
        read_latent_file(f"{tmp_path / 'edit.npz'}:edited[2]")


def test_a_colon_in_a_real_file_name_is_part_of_the_name(tmp_path):
    path = tmp_path / "run:3.npz"
    np.savez(path, w=np.zeros(5))
    assert split_latent_spec(path) == (path, None)
    assert split_latent_spec(f"{tmp_path}/x.npz:edited[1]") == (tmp_path / "x.npz", "edited[1]")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_latent_or_noise_is_blamed_on_the_file(tmp_path, bad):
    np.savez(tmp_path / "w.npz", w=np.array([0.0, bad]))
    with pytest.raises(SgsimError, match=r"w.npz:w contains NaN or infinite values \(or values beyond float32\); the file is damaged"):
        read_latent_file(tmp_path / "w.npz")
    np.savez(tmp_path / "n.npz", w=np.zeros(2), **{f"{NOISE_PREFIX}b4.noise": np.array([bad])})
    with pytest.raises(SgsimError, match="noise buffer b4.noise contains NaN"):
        read_latent_file(tmp_path / "n.npz")


def _npz_claiming(path, shape) -> None:
    """An .npz whose w.npy header claims `shape` float32 values but holds 16 bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", header.getvalue() + b"\0" * 16)


def test_files_that_are_not_latents_are_one_line(tmp_path, monkeypatch):
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    _npz_claiming(tmp_path / "huge.npz", (10**11,))
    _npz_claiming(tmp_path / "short.npz", (100,))
    np.savez(tmp_path / "f64.npz", w=np.array([0.0, 1e300]))
    np.savez(tmp_path / "text.npz", w=np.array(["0.5", "1.0"]))
    np.savez_compressed(tmp_path / "bomb.npz", w=np.zeros(1 << 20, np.float32))
    monkeypatch.setattr("sgsim.latents.MAX_UNPACKED_BYTES", 1 << 20)  # 1 MiB, so a 4 MiB array stands for a bomb
    expected = {"plain.npz": "is not a readable .npz latent file", "huge.npz": "claims an array larger than this machine's memory",
                "short.npz": "is not a readable .npz latent file", "f64.npz": r"f64.npz:w contains NaN or infinite values \(or values beyond float32\)",
                "text.npz": "text.npz:w holds <U3 values, not real numbers; it is not a latent",
                "bomb.npz": "unpacks to 4194\\d+ bytes, more than the 1 MiB"}
    for name, message in expected.items():
        with pytest.raises(SgsimError, match=message) as caught:
            read_latent_file(tmp_path / name)
        assert "\n" not in str(caught.value)
    np.savez(tmp_path / "ok.npz", w=np.zeros((4, 5), np.float16))
    assert read_latent_file(tmp_path / "ok.npz").latent.shape == (4, 5)


def test_written_latents_and_noise_read_back(tmp_path):
    w = torch.randn(4, 5)
    write_latent_file(tmp_path / "latent.npz", noise={"b4.conv1.noise_const": torch.ones(4, 4)}, w=w)
    stored = read_latent_file(tmp_path / "latent.npz")
    np.testing.assert_array_equal(stored.latent, w.numpy())
    np.testing.assert_array_equal(stored.noise["b4.conv1.noise_const"], np.ones((4, 4)))
    assert sorted(np.load(tmp_path / "latent.npz")) == ["noise.b4.conv1.noise_const", "w"]
