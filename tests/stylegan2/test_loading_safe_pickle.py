"""Hostile and corrupt checkpoints: nothing in them runs, and each is refused with a CheckpointError naming the file."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan2 import CheckpointError, UnsafeCheckpointError, load_generator
from stylegan2.loading.safe_pickle import safe_load


class Payload:
    """Pickles as a call to `func(*args)`: the classic code-execution pickle."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class UnknownClass:
    """A harmless class the whitelist does not know."""


def touch_command(marker: Path) -> str:
    return f"touch {marker}"


def hostile_objects(marker: Path) -> dict[str, object]:
    return {
        "os.system": Payload(os.system, touch_command(marker)),
        "builtins.eval": Payload(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
        "builtins.exec": Payload(exec, f"open({str(marker)!r}, 'w')"),
        "UnknownClass": UnknownClass(),
        # hidden inside a structure made only of allowed globals (OrderedDict, tensors, numpy)
        "nested": {"G_ema": torch.nn.Parameter(torch.zeros(2), requires_grad=False), "kwargs": np.float64(0.5),
                   "deep": [{"x": Payload(os.system, touch_command(marker))}]},
    }


@pytest.mark.parametrize("protocol", [2, 3, 4])  # protocols 2/3 use GLOBAL, 4 uses STACK_GLOBAL with memo
@pytest.mark.parametrize("kind", list(hostile_objects(Path("x"))))
def test_hostile_pickle_is_refused_without_running(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(hostile_objects(marker)[kind], protocol=protocol))
    with pytest.raises(UnsafeCheckpointError) as error:
        load_generator(path)
    assert str(path) in str(error.value)
    expected_global = {"os.system": "system", "builtins.eval": "builtins.eval", "subprocess.Popen": "subprocess.Popen",
                       "builtins.exec": "builtins.exec", "UnknownClass": "UnknownClass", "nested": "system"}[kind]
    assert expected_global in str(error.value)
    assert not marker.exists()


def test_protocol_0_pickle_is_not_even_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload(os.system, touch_command(marker)), protocol=0))
    with pytest.raises(CheckpointError, match="not a generator checkpoint"):
        load_generator(path)
    assert not marker.exists()


def test_refusal_names_the_global_and_module(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(Payload(subprocess.Popen, ["touch", str(marker)]), protocol=4)
    with pytest.raises(UnsafeCheckpointError, match=r"names the global subprocess\.Popen"):
        safe_load(io.BytesIO(data), "payload")


def test_persistent_id_is_refused(tmp_path):
    class PersistentPickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-0" if isinstance(obj, str) and obj == "tensor" else None

    stream = io.BytesIO()
    PersistentPickler(stream, protocol=2).dump({"G_ema": "tensor"})
    path = tmp_path / "persistent.pkl"
    path.write_bytes(stream.getvalue())
    with pytest.raises(UnsafeCheckpointError, match="persistent id"):
        load_generator(path)


def test_hostile_torch_save_is_refused_by_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Payload(os.system, touch_command(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="weights-only"):
        load_generator(path)
    assert not marker.exists()


def test_allowed_globals_rebuild_tensors_and_numpy(tmp_path):
    value = {"w": torch.nn.Parameter(torch.arange(6.0).reshape(2, 3)[:, 1:], requires_grad=False),
             "h": torch.ones(3, dtype=torch.float16), "gain": np.float64(0.25), "a": np.arange(4, dtype=np.float32),
             "s": {1, 2}}
    for protocol in (2, 3, 4):
        loaded, names = safe_load(io.BytesIO(pickle.dumps(value, protocol=protocol)), "ok")
        assert torch.equal(loaded["w"], value["w"]) and isinstance(loaded["w"], torch.nn.Parameter)
        assert loaded["h"].dtype == torch.float16 and loaded["gain"] == 0.25 and loaded["s"] == {1, 2}
        assert np.array_equal(loaded["a"], value["a"])
        assert "torch.storage._load_from_bytes" in names


def test_numpy_1_module_names_are_accepted():
    # Pickles written with numpy 1.x (every NVIDIA checkpoint) name numpy.core.multiarray, numpy 2 numpy._core.
    data = pickle.dumps({"gain": np.float64(0.5), "a": np.arange(3, dtype=np.float32)}, protocol=3)
    old = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != data
    loaded, names = safe_load(io.BytesIO(old), "numpy1")
    assert loaded["gain"] == 0.5 and np.array_equal(loaded["a"], np.arange(3, dtype=np.float32))
    assert "numpy.core.multiarray.scalar" in names


def write_png(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)


def write_truncated_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"G_ema": torch.zeros(100)}, protocol=4)[:200])


def write_truncated_zip(path: Path) -> None:
    stream = io.BytesIO()
    torch.save({"g_ema": {"style.1.weight": torch.zeros(8, 8)}}, stream)
    path.write_bytes(stream.getvalue()[:300])


def write_truncated_safetensors(path: Path) -> None:
    header = b'{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 4)


def write_torchscript_like_zip(path: Path) -> None:
    """The layout torch.jit.save writes: <root>/data.pkl beside <root>/code/ with the module's source."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("model/code/__torch__/linear.py", "def forward(self, x): return x\n")


def write_random_state_dict(path: Path) -> None:
    torch.save({"weight": torch.randn(3, 3), "bias": torch.zeros(3)}, path)


def write_foreign_safetensors(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(path))


def write_plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))


CORRUPT_FILES = {
    "empty": (lambda path: path.write_bytes(b""), "empty"),
    "png": (write_png, "not a generator checkpoint"),
    "json": (lambda path: path.write_text('{"z_dim": 512}'), "not a generator checkpoint"),
    "text": (lambda path: path.write_text("hello"), "not a generator checkpoint"),
    "truncated-pickle": (write_truncated_pickle, "truncated or corrupt pickle"),
    "truncated-zip": (write_truncated_zip, "truncated or corrupt zip/torch.save"),
    "torchscript": (write_torchscript_like_zip, "TorchScript archive"),
    "truncated-safetensors": (write_truncated_safetensors, "truncated.*safetensors"),
    "truncated-safetensors-header": (lambda path: path.write_bytes(struct.pack("<Q", 4096) + b'{"x": '),
                                     "truncated safetensors"),
    "random-state-dict": (write_random_state_dict, "without the generator 'G_ema'"),
    "foreign-safetensors": (write_foreign_safetensors, "not a generator saved by sgsim"),
    "plain-pickle": (write_plain_pickle, "pickle without StyleGAN networks"),
}


@pytest.mark.parametrize("kind", list(CORRUPT_FILES))
def test_corrupt_or_foreign_file_raises_checkpoint_error(tmp_path, kind):
    write, message = CORRUPT_FILES[kind]
    path = tmp_path / "generator.pkl"  # the extension says pickle; only the content counts
    write(path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_generator(path)
    assert not isinstance(error.value, UnsafeCheckpointError)
    assert str(path) in str(error.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*rosinality"):
        load_generator(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_generator(tmp_path)
