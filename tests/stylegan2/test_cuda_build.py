"""The extension builder: the SGSIM_CUDA_OPS policy, a failed build warned once and remembered, cache keys,
atomic placement of build directories; and (SGSIM_SLOW_TESTS=1) a real build of a tiny C++ extension."""

import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest
import torch

from stylegan2.errors import CudaOpsError, NetworkConfigError
from stylegan2.ops import cuda_build
from stylegan2.ops.cuda_build import CudaPlugin, ExtensionSpec, build_key, compile_extension, cuda_ops_policy


@pytest.fixture()
def spec(tmp_path, monkeypatch) -> ExtensionSpec:
    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SGSIM_CUDA_OPS", raising=False)
    source = tmp_path / "tiny.cpp"
    source.write_text(
        "#include <torch/extension.h>\n"
        "torch::Tensor twice(torch::Tensor x) { return x * 2; }\n"
        'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("twice", &twice); }\n'
    )
    return ExtensionSpec(name="sgsim_test_tiny", sources=(source,), with_cuda=False)


class CountingBuild:
    """A stand-in compiler: counts calls and either fails with a compiler-like message or returns a module."""

    def __init__(self, fail: bool):
        self.fail = fail
        self.calls = 0

    def __call__(self, spec: ExtensionSpec) -> types.ModuleType:
        self.calls += 1
        if self.fail:
            raise RuntimeError("Error building extension: tiny.cu(3): error: identifier \"blah\" is undefined")
        return types.ModuleType(spec.name)


@pytest.mark.parametrize("value,policy", [("", "auto"), ("1", "require"), ("0", "off"), (" 1 ", "require")])
def test_policy_from_environment(monkeypatch, value, policy):
    monkeypatch.setenv("SGSIM_CUDA_OPS", value)
    assert cuda_ops_policy() == policy


def test_unknown_policy_raises(monkeypatch):
    monkeypatch.setenv("SGSIM_CUDA_OPS", "yes")
    with pytest.raises(CudaOpsError, match="SGSIM_CUDA_OPS='yes'"):
        cuda_ops_policy()


def test_failed_build_is_warned_once_and_remembered(spec):
    build = CountingBuild(fail=True)
    plugin = CudaPlugin(spec, build=build)
    with pytest.warns(RuntimeWarning, match='identifier "blah" is undefined'):
        assert plugin.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plugin.load() is None and plugin.load() is None
    assert build.calls == 1


def test_required_kernels_raise_with_the_compiler_tail(spec, monkeypatch):
    monkeypatch.setenv("SGSIM_CUDA_OPS", "1")
    build = CountingBuild(fail=True)
    plugin = CudaPlugin(spec, build=build)
    for _ in range(2):
        with pytest.raises(CudaOpsError, match='(?s)requires the custom op.*identifier "blah"'):
            plugin.load()
    assert build.calls == 1


def test_policy_off_never_builds(spec, monkeypatch):
    monkeypatch.setenv("SGSIM_CUDA_OPS", "0")
    build = CountingBuild(fail=False)
    assert CudaPlugin(spec, build=build).load() is None
    assert build.calls == 0


def test_successful_build_happens_once(spec):
    build = CountingBuild(fail=False)
    plugin = CudaPlugin(spec, build=build)
    assert plugin.load() is plugin.load() is not None
    assert build.calls == 1


def test_choose_takes_the_reference_path_for_cpu_tensors_without_building(spec):
    build = CountingBuild(fail=False)
    plugin = CudaPlugin(spec, build=build)
    x = torch.zeros(2)
    assert plugin.choose(x, None) == "ref" and plugin.choose(x, "cuda") == "cuda"
    assert build.calls == 0
    with pytest.raises(NetworkConfigError, match=r"impl='fast' is not one of None, 'ref', 'cuda'"):
        plugin.choose(x, "fast")


def test_build_key_follows_sources_headers_and_flags(spec):
    key = build_key(spec)
    assert key == build_key(spec)
    assert build_key(ExtensionSpec(spec.name, spec.sources, extra_cflags=("-O2",), with_cuda=False)) != key
    header = spec.sources[0].with_name("tiny.h")
    header.write_text("#pragma once\n")
    with_header = ExtensionSpec(spec.name, spec.sources, headers=(header,), with_cuda=False)
    header_key = build_key(with_header)
    assert header_key != key
    header.write_text("#pragma once\n// changed\n")
    assert build_key(with_header) != header_key
    spec.sources[0].write_text(spec.sources[0].read_text() + "// changed\n")
    assert build_key(spec) != key


def _fake_torch_load(on_build=None):
    """A stand-in for torch.utils.cpp_extension.load that 'builds' into build_directory."""

    def load(name, sources, build_directory, **kwargs):
        Path(build_directory, f"{name}.so").write_bytes(b"not really a library")
        Path(build_directory, "lock").touch()
        if on_build is not None:
            on_build()
        return types.ModuleType(name)

    return load


def test_build_is_renamed_into_place_and_leaves_no_staging(spec, monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "load", _fake_torch_load())
    module = compile_extension(spec)
    assert module.__name__ == spec.name
    root = cuda_build.extensions_root()
    assert [p.name for p in root.iterdir()] == [f"{spec.name}-{build_key(spec)}"]
    assert (root / f"{spec.name}-{build_key(spec)}" / f"{spec.name}.so").is_file()


def test_losing_a_build_race_keeps_the_winners_directory(spec, monkeypatch):
    from torch.utils import cpp_extension

    final = cuda_build.extensions_root() / f"{spec.name}-{build_key(spec)}"

    def winner_finishes_first():
        final.mkdir(parents=True)
        (final / "winner.txt").touch()

    monkeypatch.setattr(cpp_extension, "load", _fake_torch_load(winner_finishes_first))
    assert compile_extension(spec).__name__ == spec.name
    assert [p.name for p in final.parent.iterdir()] == [final.name]
    assert [p.name for p in final.iterdir()] == ["winner.txt"]


def test_failed_build_leaves_nothing_behind(spec, monkeypatch):
    from torch.utils import cpp_extension

    def broken(**kwargs):
        raise RuntimeError("Error building extension 'sgsim_test_tiny'")

    monkeypatch.setattr(cpp_extension, "load", broken)
    with pytest.raises(RuntimeError, match="Error building"):
        compile_extension(spec)
    assert list(cuda_build.extensions_root().iterdir()) == []


@pytest.mark.skipif(os.environ.get("SGSIM_SLOW_TESTS") != "1", reason="compiles a C++ extension (about a minute); set SGSIM_SLOW_TESTS=1")
def test_real_build_is_cached_across_processes(spec):
    module = compile_extension(spec)
    import torch

    assert torch.equal(module.twice(torch.ones(2)), torch.full((2,), 2.0))
    # A second process must import the cached library without compiling: make any compile fail there.
    script = textwrap.dedent(
        f"""
        import torch, torch.utils.cpp_extension as ce
        from pathlib import Path
        from stylegan2.ops.cuda_build import ExtensionSpec, compile_extension
        ce.load = lambda **kw: (_ for _ in ()).throw(AssertionError("rebuilt instead of using the cache"))
        spec = ExtensionSpec(name={spec.name!r}, sources=(Path({str(spec.sources[0])!r}),), with_cuda=False)
        print(compile_extension(spec).twice(torch.ones(1)).item())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2.0"
