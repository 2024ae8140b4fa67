"""Errors of the weights manifest, cache and downloader."""


class WeightsError(Exception):
    """A weights file cannot be found, fetched or verified."""


class MissingWeightsError(WeightsError):
    """A named weights file is not in the cache and cannot be fetched now."""
