"""JIT builds of the custom-op extensions: cached per toolchain and source, built atomically, failures remembered.

Policy, from the environment variable SGSIM_CUDA_OPS: unset = use kernels for CUDA tensors when they build,
else warn once and use the reference path; "1" = kernels are required (a failed build raises CudaOpsError);
"0" = never build, always use the reference path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

from stylegan2.errors import CudaOpsError, NetworkConfigError

POLICY_VARIABLE = "SGSIM_CUDA_OPS"
_POLICIES = {"": "auto", "1": "require", "0": "off"}
_ERROR_TAIL_CHARS = 4000


def cuda_ops_policy() -> str:
    """'auto', 'require' or 'off', read from SGSIM_CUDA_OPS on every call so that tests and users can switch it."""
    value = os.environ.get(POLICY_VARIABLE, "").strip()
    if value not in _POLICIES:
        raise CudaOpsError(f"{POLICY_VARIABLE}={value!r} is not understood: set it to 1 (require the CUDA kernels), 0 (use the reference path) or unset it")
    return _POLICIES[value]


def extensions_root() -> Path:
    """Where built extensions are cached: $SGSIM_HOME/torch_extensions (SGSIM_HOME defaults to ~/.cache/sgsim)."""
    return Path(os.environ.get("SGSIM_HOME", "~/.cache/sgsim")).expanduser() / "torch_extensions"


@dataclass(frozen=True)
class ExtensionSpec:
    """What to compile: a module name, its sources, the headers they include (for the cache key) and extra flags."""

    name: str
    sources: tuple[Path, ...]
    headers: tuple[Path, ...] = ()
    extra_cflags: tuple[str, ...] = ("-O3",)
    extra_cuda_cflags: tuple[str, ...] = ("-O3",)
    with_cuda: bool = True


def _target_arch(spec: ExtensionSpec) -> str:
    if not spec.with_cuda:
        return "cpu"
    listed = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"sm_{major}{minor}+{listed}"
    return listed or "no-device"


def build_key(spec: ExtensionSpec) -> str:
    """A digest of everything that makes a built library unusable elsewhere: versions, GPU arch, flags, sources."""
    digest = hashlib.sha256()
    for part in (torch.__version__, str(torch.version.cuda), sys.version.split()[0], _target_arch(spec), *spec.extra_cflags, "|", *spec.extra_cuda_cflags):
        digest.update(part.encode() + b"\0")
    for source in (*spec.sources, *spec.headers):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _import_library(path: Path) -> ModuleType:
    # The module name must be the one the library was compiled with (PyInit_<name>), i.e. the file stem.
    module_spec = importlib.util.spec_from_file_location(path.name.split(".")[0], path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _built_library(directory: Path) -> Path | None:
    libraries = sorted(directory.glob("*.so")) + sorted(directory.glob("*.pyd"))
    return libraries[0] if libraries else None


def compile_extension(spec: ExtensionSpec) -> ModuleType:
    """Import the cached build of `spec`, building it first if needed.

    The build runs in a fresh temporary directory that is renamed into place only when complete, so a
    killed build leaves no lock and no half-built cache; when two processes race, the loser discards its
    own directory and later processes use the winner's.
    """
    from torch.utils import cpp_extension  # heavy import, only when a build is really needed

    root = extensions_root()
    final = root / f"{spec.name}-{build_key(spec)}"
    library = _built_library(final) if final.is_dir() else None
    if library is not None:
        return _import_library(library)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        module = cpp_extension.load(
            name=spec.name,
            sources=[str(source) for source in spec.sources],
            extra_cflags=list(spec.extra_cflags),
            extra_cuda_cflags=list(spec.extra_cuda_cflags),
            build_directory=str(staging),
            with_cuda=spec.with_cuda,
            verbose=False,
        )
        try:
            os.rename(staging, final)
        except OSError:
            pass  # another process finished first; its directory is equivalent
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return module


class CudaPlugin:
    """One extension, built at most once per process: a failure is warned about once and then remembered."""

    def __init__(self, spec: ExtensionSpec, build: Callable[[ExtensionSpec], ModuleType] = compile_extension):
        self.spec = spec
        self._build = build
        self._attempted = False
        self._module: ModuleType | None = None
        self.failure: str | None = None  # the build error's tail, once a build has failed

    def load(self) -> ModuleType | None:
        """The compiled module, or None when the reference path must be used (policy 'off' or a failed build)."""
        policy = cuda_ops_policy()
        if policy == "off":
            return None
        if not self._attempted:
            self._attempted = True
            try:
                self._module = self._build(self.spec)
            except Exception as error:  # any toolchain failure: compiler, linker, missing CUDA, import
                self.failure = f"{type(error).__name__}: {error}"[-_ERROR_TAIL_CHARS:]
                if policy != "require":
                    warnings.warn(
                        f"Building the custom op {self.spec.name!r} failed; using the slower pure-PyTorch path for this process. "
                        f"Set {POLICY_VARIABLE}=0 to skip the build or {POLICY_VARIABLE}=1 to make this an error. Compiler output (tail):\n{self.failure}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
        if self._module is None and policy == "require":
            raise CudaOpsError(
                f"{POLICY_VARIABLE}=1 requires the custom op {self.spec.name!r}, but its build failed (cache: {extensions_root()}). "
                f"Fix the CUDA toolchain (CUDA_HOME, nvcc, ninja) or unset {POLICY_VARIABLE}. Compiler output (tail):\n{self.failure}"
            )
        return self._module

    def choose(self, x: torch.Tensor, impl: str | None) -> str:
        """'cuda' or 'ref' for an op on `x`: impl None picks the kernel for CUDA tensors when it is available."""
        if impl is None:
            return "cuda" if x.is_cuda and self.load() is not None else "ref"
        if impl not in ("ref", "cuda"):
            raise NetworkConfigError(f"{self.spec.name}: impl={impl!r} is not one of None, 'ref', 'cuda'")
        return impl
