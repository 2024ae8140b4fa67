"""Errors of the editing toolkit, the tuple of every error the CLI reports as one line, and the notices it shows."""


class SgsimError(Exception):
    """A user-facing problem in sgsim itself: bad input, bad option, failed run."""


class UsageProblem(SgsimError):
    """Options that cannot work together (two sources, none, a class without a seed): the command line reports it as a
    usage error, exit code 2."""


class AudioError(SgsimError):
    """An audio file or waveform cannot be used: missing, corrupt, empty or silent."""


class ImageError(SgsimError):
    """An image file cannot be used: missing, a folder, empty, truncated or not an image."""


class NetworkFileError(SgsimError):
    """A weights file for a helper network (identity, LPIPS) is not in the format that network expects."""


class SgsimNotice(UserWarning):
    """Something a user should know about a run that still goes on (a loss turned off, a long file cut). The API
    raises it as a Python warning; the CLI shows it as one `note: ...` line above any progress bar."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception type that means the user must change something, across all packages."""
    from checkpoints.errors import WeightsError
    from encoders.errors import EncoderError
    from stylegan2.errors import CheckpointError, CudaOpsError, NetworkConfigError

    return (SgsimError, CheckpointError, CudaOpsError, NetworkConfigError, EncoderError, WeightsError)
