"""Resolving a weights name or path to a local file, without ever touching the network."""

from __future__ import annotations

import socket

import pytest

import checkpoints
from checkpoints.errors import MissingWeightsError, WeightsError


def test_cache_dir_follows_sgsim_home(sgsim_home):
    assert checkpoints.cache_dir() == sgsim_home
    assert checkpoints.weights_dir() == sgsim_home / "weights"


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("SGSIM_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert checkpoints.cache_dir() == tmp_path / ".cache" / "sgsim"


def test_existing_path_is_returned_as_is(tmp_path):
    path = tmp_path / "my.pkl"
    path.write_bytes(b"x")
    assert checkpoints.resolve(path) == path
    assert checkpoints.resolve(str(path)) == path


def test_cached_name_resolves(sgsim_home):
    target = sgsim_home / "weights" / checkpoints.entry("ffhq").filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert checkpoints.resolve("ffhq") == target


def test_missing_name_says_how_to_get_it_without_network(sgsim_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("resolve must never open a connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(MissingWeightsError) as info:
        checkpoints.resolve("ffhq")
    message = str(info.value)
    assert "\n" not in message
    for part in ("stylegan2-ada-ffhq.pkl", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
                 "sgsim weights download ffhq", "sgsim weights import FILE --name ffhq"):
        assert part in message


def test_missing_path_and_unknown_name(sgsim_home, tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        checkpoints.resolve(tmp_path / "absent.pt")
    with pytest.raises(WeightsError, match="unknown weights name 'clip-vit-b32'.*clip-vit-b-32"):
        checkpoints.resolve("clip-vit-b32")
