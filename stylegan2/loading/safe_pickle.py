"""A pickle reader that resolves only whitelisted globals, so a hostile checkpoint can never run code.

NVIDIA's own loaders exec the Python source stored inside their pickles (torch_utils.persistence,
dnnlib.tflib.network). Here every global a pickle names goes through `find_class`; the few that a
generator pickle needs map to inert stand-ins or to tensor rebuilders, anything else raises
`UnsafeCheckpointError` before it is called.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import types
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from stylegan2.errors import CheckpointError, UnsafeCheckpointError

try:  # numpy >= 2 keeps the pickle helpers in numpy._core; numpy.core is a deprecated alias there.
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray


@dataclass(frozen=True, slots=True)
class PersistentObject:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` stood for: a class name and its state.

    The meta's `module_src` (the networks' Python source) is dropped, never executed.
    """

    class_name: str
    state: dict


class PickledEasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict`: a plain dict that also accepts the (empty) BUILD state."""

    def __setstate__(self, state: Any) -> None:
        if state:
            self.update(state)


class TFNetworkState:
    """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state dict and builds no graph."""

    state: dict

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"a TensorFlow network's state is a {type(state).__name__}, expected a dict")
        self.state = state


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    """Record the persistence meta instead of exec'ing its module source."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise CheckpointError("a torch_utils.persistence object has no 'class' meta with a state dict")
    return PersistentObject(str(meta.get("class_name")), meta["state"])


def _load_storage_from_bytes(data: Any) -> Any:
    """Storages inside plain pickles are torch.save bytes; read them with torch's weights-only loader."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"torch.storage._load_from_bytes got a {type(data).__name__}, expected bytes")
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"a pickled storage was refused by torch's weights-only loader: {error}") from None


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def view_problem(offset: Any, size: Any, stride: Any, elements: int) -> str | None:
    """What is wrong with a pickled tensor view of a storage of `elements` elements, or None when it fits.

    A view past its storage must be refused: torch would grow the storage with uninitialised heap bytes.
    """
    if not (_is_index(offset) and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and len(size) == len(stride) and all(map(_is_index, size)) and all(map(_is_index, stride))):
        return (f"a tensor view has offset {str(offset)[:20]}, size {str(size)[:60]}, stride {str(stride)[:60]}; "
                "expected non-negative integers of one length")
    if all(size) and offset + sum((dim - 1) * step for dim, step in zip(size, stride)) >= elements:
        return (f"a tensor view of size {tuple(size)} at offset {offset} reaches past its storage of {elements} "
                "elements; the file is corrupt or forged")
    return None


def check_view_in_storage(offset: Any, size: Any, stride: Any, elements: int) -> None:
    """Raise CheckpointError for a view that view_problem finds wrong."""
    problem = view_problem(offset, size, stride, elements)
    if problem:
        raise CheckpointError(problem)


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, requires_grad: bool,
                    backward_hooks: Any, metadata: Any = None) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2, refusing anything but a storage, views beyond it, and (non-empty) hooks."""
    if isinstance(storage, torch.storage.TypedStorage):
        with warnings.catch_warnings():  # torch.load made this TypedStorage; its deprecation is torch's own
            warnings.simplefilter("ignore", UserWarning)
            elements = storage.size()
    elif isinstance(storage, torch.UntypedStorage):
        elements = storage.nbytes()
    else:
        raise CheckpointError(f"a tensor is rebuilt from a {type(storage).__name__}, expected a torch storage")
    check_view_in_storage(offset, size, stride, elements)
    if backward_hooks:
        raise UnsafeCheckpointError("a pickled tensor carries backward hooks; a generator checkpoint never does")
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(f"a tensor's metadata is a {type(metadata).__name__}, expected a dict")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, collections.OrderedDict(), metadata)


def _rebuild_parameter(data: Any, requires_grad: bool, backward_hooks: Any) -> torch.nn.Parameter:
    """torch._utils._rebuild_parameter without hooks."""
    if type(data) is not torch.Tensor or backward_hooks:
        raise CheckpointError("a pickled parameter does not wrap a plain tensor")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _latin1_bytes(text: Any, encoding: str = "latin1") -> bytes:
    """Protocol 2 stores bytes as _codecs.encode(str, 'latin1'); no other codec is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"a pickle encodes bytes with codec {encoding!r}, expected 'latin1'")
    return text.encode("latin1")


class _Helper:
    """An allowed global as the pickle sees it: callable, but a pickle's BUILD cannot set attributes on it."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "_function", function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"a pickle tries to set {name[:40]!r} on the loader's helper "
                                    f"{self._function.__name__}; refusing (nothing from the file was executed)")


_NUMPY_GLOBALS: dict[str, Any] = {"scalar": _np_multiarray.scalar, "_reconstruct": _np_multiarray._reconstruct}

# Every global a StyleGAN2 checkpoint pickle names (docs/reference.md#nvidia-pickles), and what it becomes here.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): PickledEasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetworkState,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "set"): set,  # pickle protocols 2 and 3 store Module._non_persistent_buffers_set this way
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{(module, name): value for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name, value in _NUMPY_GLOBALS.items()},
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose globals come only from ALLOWED_GLOBALS; it records every global the pickle names."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file)
        self.source = source
        self.globals_named: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 writes Python 2 names (__builtin__.set); map them as pickle's own find_class does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        self.globals_named.add(f"{module}.{name}")
        try:
            allowed = ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.source} names the global {module}.{name}, which a generator checkpoint never needs; "
                "refusing to load it (nothing from the file was executed). Use a checkpoint from a trusted source."
            ) from None
        # Our Python functions have writable attributes (__kwdefaults__, __code__...); classes here define
        # __setstate__ or are builtins, and builtin functions have none, so only functions need the shield.
        return _Helper(allowed) if isinstance(allowed, types.FunctionType) else allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"{self.source} uses a pickle persistent id ({str(pid)[:60]!r}), which no generator pickle holds; "
            "refusing to load it (nothing from the file was executed)."
        )


def safe_load(file: BinaryIO, source: str) -> tuple[Any, set[str]]:
    """Unpickle `file` with the whitelist; returns the object and the globals it named (for format detection)."""
    unpickler = SafeUnpickler(file, source)
    try:
        return unpickler.load(), unpickler.globals_named
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, MemoryError, UnicodeDecodeError, OverflowError, RecursionError) as error:
        raise CheckpointError(f"{source} is a truncated or corrupt pickle ({type(error).__name__}: {error})") from None
