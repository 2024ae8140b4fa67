"""Errors raised while reading or building a generator, with messages a user can act on."""


class CheckpointError(Exception):
    """A generator checkpoint is missing, truncated, foreign or inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle names a global outside the whitelist; nothing from it was executed."""
