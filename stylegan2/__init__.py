"""StyleGAN2-ADA and StyleGAN3 (T, R) generators: networks, custom ops and safe checkpoint loaders. Knows nothing of audio."""

from stylegan2.errors import CheckpointError, UnsafeCheckpointError
from stylegan2.loading import load_generator, save_generator
from stylegan2.networks import Generator

__all__ = ["CheckpointError", "Generator", "UnsafeCheckpointError", "load_generator", "save_generator"]
