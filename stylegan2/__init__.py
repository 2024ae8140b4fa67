"""StyleGAN2-ADA generator: networks, custom ops and safe checkpoint loaders. Knows nothing of audio."""

from stylegan2.errors import CheckpointError, UnsafeCheckpointError
from stylegan2.loading import load_generator, save_generator

__all__ = ["CheckpointError", "UnsafeCheckpointError", "load_generator", "save_generator"]
