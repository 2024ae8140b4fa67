"""Device names are checked before any work: a wrong or absent device is one actionable error."""

from __future__ import annotations

import pytest
import torch

from sgsim.devices import default_device, parse_device
from sgsim.errors import SgsimError


def test_no_device_is_the_default_and_cpu_is_always_there():
    assert parse_device(None) == default_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert parse_device("cpu") == parse_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("name, message", [
    ("foo", "'foo' is not a device name; use cpu, cuda or cuda:N"),
    ("cuda:x", "is not a device name"),
    ("cpu:1", "there is one CPU device"),
    ("cuda:99", "cuda:99"),
])
def test_bad_names_are_refused(name, message):
    with pytest.raises(SgsimError, match=message):
        parse_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_says_to_use_the_cpu():
    with pytest.raises(SgsimError, match="no usable CUDA GPU; use --device cpu"):
        parse_device("cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is present")
def test_mps_where_there_is_none():
    with pytest.raises(SgsimError, match="MPS backend is not available"):
        parse_device("mps")
