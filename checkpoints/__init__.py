"""The manifest of official weights, the local cache and the downloader."""

from checkpoints.errors import MissingWeightsError, WeightsError

__all__ = ["MissingWeightsError", "WeightsError"]
