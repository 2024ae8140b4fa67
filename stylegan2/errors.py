"""Errors raised while reading or building a generator, with messages a user can act on."""


class CheckpointError(Exception):
    """A generator checkpoint is missing, truncated, foreign or inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle names a global outside the whitelist; nothing from it was executed."""


class NetworkConfigError(ValueError):
    """A generator or custom op was asked for an architecture, activation, mode or shape it does not support."""


class CudaOpsError(RuntimeError):
    """The custom CUDA kernels were demanded (SGSIM_CUDA_OPS=1 or impl='cuda') but cannot be built or used."""
