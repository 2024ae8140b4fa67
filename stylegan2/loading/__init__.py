"""Safe generator checkpoint loading (NVIDIA PyTorch and TensorFlow pickles, rosinality .pt) and our safetensors format."""

from stylegan2.loading.checkpoint import GeneratorCheckpoint
from stylegan2.loading.load import GeneratorSummary, build_generator, describe_generator, load_generator, read_checkpoint
from stylegan2.loading.native import save_generator

__all__ = [
    "GeneratorCheckpoint", "GeneratorSummary", "build_generator", "describe_generator", "load_generator", "read_checkpoint",
    "save_generator",
]
