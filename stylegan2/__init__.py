"""StyleGAN2-ADA generator: networks, custom ops and safe checkpoint loaders. Knows nothing of audio."""

from stylegan2.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["CheckpointError", "UnsafeCheckpointError"]
