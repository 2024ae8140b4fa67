"""The manifest of official weights, the local cache and the downloader."""

from checkpoints.cache import cache_dir, resolve, resolve_all, weights_dir
from checkpoints.download import StallRule, VerifyResult, download, import_file, verify
from checkpoints.errors import MissingWeightsError, WeightsError
from checkpoints.manifest import WeightsEntry, entries, entry

__all__ = [
    "MissingWeightsError",
    "StallRule",
    "VerifyResult",
    "WeightsEntry",
    "WeightsError",
    "cache_dir",
    "download",
    "entries",
    "entry",
    "import_file",
    "resolve",
    "resolve_all",
    "verify",
    "weights_dir",
]
