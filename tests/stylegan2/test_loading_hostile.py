"""Forged and broken generator checkpoints, in real formats: one-line errors, bounded memory, nothing executed or written."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from sgsim.cli import main
from stylegan2 import CheckpointError, Generator, load_generator, save_generator
from stylegan2.errors import UnsafeCheckpointError
from stylegan2.loading import safe_pickle
from stylegan2.loading.load import SETTING_BOUNDS
from stylegan2.loading.native import FORMAT_NAME, FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[2]
KWARGS = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
          "mapping_kwargs": {"num_layers": 1}, "synthesis_kwargs": {"channel_base": 64, "channel_max": 8}}


def forged_safetensors(path: Path, init_kwargs, tensors: dict | None = None) -> Path:
    """A ~700-byte sgsim generator file whose settings say whatever the attacker likes."""
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "init_kwargs": json.dumps(init_kwargs)}
    save_file(tensors or {"synthesis.b4.const": torch.zeros(1)}, str(path), metadata=metadata)
    return path


def with_setting(group: str | None, name: str, value) -> dict:
    kwargs = json.loads(json.dumps(KWARGS))
    (kwargs[group] if group else kwargs)[name] = value
    return kwargs


def at_resolution(resolution: int) -> dict:
    """Settings of a real-width network (ADA's default channels) at `resolution`."""
    return {**with_setting(None, "img_resolution", resolution), "synthesis_kwargs": {}}


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


SETTINGS = {  # name: (init kwargs, message)
    "resolution-8192-but-no-tensors": (at_resolution(8192), "does not match the generator"),
    "resolution-32768": (at_resolution(32768), r"img_resolution=32768 is not an integer in \[4, 8192\]"),
    "resolution-not-power-of-two": (with_setting(None, "img_resolution", 48), "not a power of two"),
    "huge-z-dim": (with_setting(None, "z_dim", 10**9), r"z_dim=1000000000 is not an integer"),
    "z-dim-string": (with_setting(None, "z_dim", "512"), "z_dim=512 is not an integer"),
    "z-dim-bool": (with_setting(None, "w_dim", True), "w_dim=True is not an integer"),
    "zero-channels": (with_setting(None, "img_channels", 0), "img_channels=0 is not an integer"),
    "zero-channel-base": (with_setting("synthesis_kwargs", "channel_base", 0), "channel_base=0 is not an integer"),
    "channel-base-below-resolution": (with_setting("synthesis_kwargs", "channel_base", 4), "leaves no channels"),
    "billion-mapping-layers": (with_setting("mapping_kwargs", "num_layers", 10**9), "num_layers=1000000000"),
    "kwargs-a-list": ([1, 2, 3], "not a JSON object"),
    "mapping-kwargs-an-int": (with_setting(None, "mapping_kwargs", 7), "mapping_kwargs are a int"),
    "unknown-option": (with_setting("synthesis_kwargs", "exec", "x"), "cannot build a generator"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_forged_settings_are_refused_before_allocation(tmp_path, case):
    init_kwargs, message = SETTINGS[case]
    path = forged_safetensors(tmp_path / "g.safetensors", init_kwargs)
    with pytest.raises(CheckpointError, match=message) as error:
        load_generator(path)
    assert "\n" not in str(error.value)


MEASURE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
import torch
from sgsim.cli import main
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    main()
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


@pytest.mark.parametrize("resolution", [8192, 32768])
def test_sgsim_generate_on_a_tiny_forged_file_stays_small(tmp_path, resolution):
    """Before: 785 MiB more at 8192 px (1.2 GB peak), ~11.5 GB at 32768, from a 700-byte file."""
    path = forged_safetensors(tmp_path / "g.safetensors", at_resolution(resolution))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", MEASURE, "generate", "--seed", "1", "--out", str(out), "--generator", str(path),
                          "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    stderr = [line for line in run.stderr.splitlines() if line.strip()]
    assert report["code"] == 1 and len(stderr) == 1 and stderr[0].startswith("Error: "), run.stderr
    # The command's own lazy imports take ~130 MiB; the forged network took 785 MiB more at 8192 px, ~11 GiB at 32768.
    assert report["growth_kib"] < 400 * 1024
    assert not out.exists()


def test_a_valid_file_still_loads_after_the_forgeries(tmp_path):
    G = Generator(**KWARGS)
    path = save_generator(G, tmp_path / "ok.safetensors")
    assert load_generator(path).init_kwargs == G.init_kwargs


def test_bounds_admit_every_published_stylegan2():
    for name, value in {"z_dim": 512, "w_dim": 512, "img_resolution": 1024, "img_channels": 3, "c_dim": 0}.items():
        low, high = SETTING_BOUNDS[name]
        assert low <= value <= high


# --- pickles ---------------------------------------------------------------------------------------------------

@pytest.fixture
def persistence(monkeypatch, tmp_path):
    """A stand-in torch_utils.persistence for pickling NVIDIA-style objects; its function must never run on load."""
    marker = tmp_path / "executed"
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        marker.write_text("ran")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)

    class Persistent:
        def __init__(self, class_name, state):
            self.meta = {"type": "class", "version": 6, "module_src": f"open({str(marker)!r}, 'w')",
                         "class_name": class_name, "state": state}

        def __reduce__(self):
            return _reconstruct_persistent_obj, (self.meta,)

    yield Persistent
    assert not marker.exists()


def module_state(**fields) -> dict:
    return {"_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict(), **fields}


def generator_state(Persistent, **overrides) -> dict:
    """A Generator with only synthesis.b4.const: enough to pass the StyleGAN2 check and reach the kwargs."""
    b4 = Persistent("SynthesisBlock", module_state(_parameters=OrderedDict(const=torch.zeros(8, 4, 4))))
    synthesis = Persistent("SynthesisNetwork", module_state(_modules=OrderedDict(b4=b4)))
    state = module_state(_modules=OrderedDict(synthesis=synthesis), _init_args=(), _init_kwargs=dict(KWARGS))
    state.update(overrides)
    return state


def snapshot(Persistent, **overrides) -> bytes:
    """Protocol 2 as ADA's Python 3.7 wrote, without the frames of protocol 4, so tests may splice opcodes in."""
    return pickle.dumps({"G_ema": Persistent("Generator", generator_state(Persistent, **overrides))}, protocol=2)


PICKLES = {  # name: (state overrides, message)
    "params-a-list": ({"_parameters": [1, 2]}, "layout of a generator checkpoint"),
    "modules-an-int": ({"_modules": 5}, "layout of a generator checkpoint"),
    "kwargs-an-int": ({"_init_kwargs": 7}, "layout of a generator checkpoint"),
    "z-dim-a-word": ({"_init_kwargs": {**KWARGS, "z_dim": "many"}}, "layout of a generator checkpoint"),
    "z-dim-huge": ({"_init_kwargs": {**KWARGS, "z_dim": 10**12}}, "z_dim=1000000000000 is not an integer"),
    "honest-but-incomplete": ({}, "does not match the generator"),
}


@pytest.mark.parametrize("case", list(PICKLES))
def test_wrongly_typed_pickle_fields_are_one_line(tmp_path, persistence, case):
    overrides, message = PICKLES[case]
    path = tmp_path / "g.pkl"
    path.write_bytes(snapshot(persistence, **overrides))
    with pytest.raises(CheckpointError, match=message) as error:
        load_generator(path)
    assert "\n" not in str(error.value)


def test_deeply_nested_kwargs_are_one_line(tmp_path, persistence):
    placeholder = "DEEP-NESTING-GOES-HERE"
    data = snapshot(persistence, _init_kwargs={**KWARGS, "mapping_kwargs": {"embed_features": placeholder}})
    depth = 100_000
    # EMPTY_LIST x depth then APPEND x (depth - 1): a list nested 100000 deep, built without recursion.
    encoded = b"X" + len(placeholder).to_bytes(4, "little") + placeholder.encode()  # BINUNICODE
    assert data.count(encoded) == 1
    path = tmp_path / "g.pkl"
    path.write_bytes(data.replace(encoded, b"]" * depth + b"a" * (depth - 1)))
    with pytest.raises(CheckpointError, match="RecursionError") as error:
        load_generator(path)
    assert "\n" not in str(error.value)


def test_huge_binbytes8_length_is_refused_without_allocating(tmp_path):
    path = tmp_path / "g.pkl"
    path.write_bytes(b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x.")
    with pytest.raises(CheckpointError, match="past the end of the file"):
        load_generator(path)


def forge_size(data: bytes, elements: int, claimed: int) -> bytes:
    """Replace a pickled tensor's size tuple (BININT1 n, TUPLE1) by one of `claimed` elements."""
    size = bytes([ord("K"), elements, 0x85])
    assert data.count(size) == 1
    return data.replace(size, bytes([ord("K"), claimed, 0x85]))


def forged_view_pickle(elements: int, claimed: int) -> bytes:
    return forge_size(pickle.dumps({"w": torch.arange(float(elements))}, protocol=2), elements, claimed)


def test_a_view_past_its_storage_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="reaches past its storage of 7 elements"):
        safe_pickle.safe_load(io.BytesIO(forged_view_pickle(7, 200)), "forged")
    data, _ = safe_pickle.safe_load(io.BytesIO(forged_view_pickle(7, 7)), "honest")
    assert torch.equal(data["w"], torch.arange(7.0))


@pytest.mark.parametrize("offset,size,stride", [(-1, (2,), (1,)), (0, (2,), (-1,)), (0, (2, 2), (1,)), (0, ("2",), (1,)),
                                                (3, (2, 2), (2, 1))])
def test_view_geometry_is_checked(offset, size, stride):
    with pytest.raises(CheckpointError):
        safe_pickle.check_view_in_storage(offset, size, stride, elements=6)


def test_weights_convert_writes_nothing_from_a_forged_view(tmp_path, persistence):
    state = generator_state(persistence, _parameters=OrderedDict(w=torch.arange(7.0)))
    data = pickle.dumps({"G_ema": persistence("Generator", state)}, protocol=2)
    path = tmp_path / "g.pkl"
    path.write_bytes(forge_size(data, 7, 250))
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(main, ["weights", "convert", str(path), str(out)], prog_name="sgsim")
    assert result.exit_code == 1 and "reaches past its storage" in one_line(result)
    assert list(tmp_path.iterdir()) == [path]


def test_a_pickle_cannot_set_attributes_on_the_loaders_helpers():
    target = safe_pickle.ALLOWED_GLOBALS[("torch._utils", "_rebuild_tensor_v2")]
    before = target.__kwdefaults__
    # GLOBAL torch._utils _rebuild_tensor_v2; BUILD (None, {"__kwdefaults__": {"metadata": 1}}); STOP
    data = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + b"N}X\x0e\x00\x00\x00__kwdefaults__}X\x08\x00\x00\x00metadataK\x01ss\x86b.")
    with pytest.raises(UnsafeCheckpointError, match="tries to set '__kwdefaults__'"):
        safe_pickle.safe_load(io.BytesIO(data), "forged")
    assert target.__kwdefaults__ is before


def test_a_refused_torch_global_is_named_without_torchs_advice(tmp_path):
    class Payload:
        def __reduce__(self):
            return os.system, ("true",)

    path = tmp_path / "g.pt"
    torch.save({"g_ema": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_generator(path)
    message = str(error.value)
    assert "\n" not in message and "system" in message and "weights_only" not in message


def test_generator_formats_use_the_manifest_vocabulary():
    from checkpoints import entries
    from checkpoints.manifest import formats
    from stylegan2.loading.detect import FORMATS

    assert set(FORMATS) <= set(formats())
    assert {item.format for item in entries() if item.kind == "generator"} <= set(FORMATS)


def test_a_fifo_given_as_generator_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "g.pkl"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_generator(fifo)


def test_a_torch_zip_view_past_its_storage_is_one_line(tmp_path):
    """torch.load's own storages cannot grow, so rosinality files refuse the forgery too."""
    buffer = io.BytesIO()
    torch.save({"g_ema": {"w": torch.arange(7.0)}}, buffer)
    path = tmp_path / "g.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w") as forged:
        for info in source.infolist():
            data = source.read(info.filename)
            forged.writestr(info.filename, forge_size(data, 7, 200) if info.filename.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError, match="not resizable") as error:
        load_generator(path)
    assert "\n" not in str(error.value)
