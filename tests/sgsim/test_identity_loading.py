"""A hostile ArcFace file is refused in one line that names the refused global, never torch's weights_only=False advice."""

from __future__ import annotations

import os

import pytest
import torch

from sgsim.errors import NetworkFileError
from sgsim.identity import read_arcface


class Payload:
    def __reduce__(self):
        return os.system, ("echo ran > /dev/null",)


def test_hostile_arcface_file_is_one_line(tmp_path):
    path = tmp_path / "model_ir_se50.pth"
    torch.save({"input_layer.0.weight": Payload()}, path)
    with pytest.raises(NetworkFileError) as error:
        read_arcface(path)
    message = str(error.value)
    assert "\n" not in message and "system" in message and "weights_only" not in message
    assert "nothing from it was run" in message
