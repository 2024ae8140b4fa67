"""CLIP weights files that are cut, forged or hostile: one EncoderError line, nothing run, the valid file still loads."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from encoders.clip import load_clip
from encoders.errors import EncoderError


def safetensors_with(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


class Payload:
    def __reduce__(self):
        return os.system, ("echo ran > /dev/null",)


def hostile_zip(path):
    torch.save({"visual.proj": Payload()}, path)


CASES = {  # file name, writer, message
    "overlapping-offsets": (lambda p: p.write_bytes(safetensors_with(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
        bytes(12))), "overlap"),
    "offsets-outside-the-file": (lambda p: p.write_bytes(safetensors_with(
        {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, bytes(16))), "outside the file"),
    "cut-zip": (lambda p: (torch.save({"w": torch.zeros(1000)}, p), p.write_bytes(p.read_bytes()[:-200])), "is not a CLIP checkpoint|truncated"),
    "hostile-zip": (hostile_zip, r"refused by torch's weights-only loader .*system"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_clip_files_are_one_line(tmp_path, case):
    write, message = CASES[case]
    path = tmp_path / "clip.bin"
    write(path)
    with pytest.raises(EncoderError, match=message) as error:
        load_clip("ViT-B-32-quickgelu", pretrained=path)
    assert "\n" not in str(error.value) and "weights_only=False" not in str(error.value)


def test_a_valid_file_after_them_is_read(tmp_path):
    path = tmp_path / "clip.safetensors"
    save_file({"logit_scale": torch.ones(())}, str(path))
    with pytest.raises(EncoderError, match="does not fit this CLIP model"):  # read fine; only the layout is wrong
        load_clip("ViT-B-32-quickgelu", pretrained=path)
