"""Checks shared by the encoders' parity tests against golden embeddings made with each author's own code."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest


def matches_golden(embedding: np.ndarray, reference: np.ndarray, atol: float) -> None:
    """One clip's embedding equals the reference run's: cosine >= 0.9999 and every element within `atol`."""
    cosine = embedding @ reference / (np.linalg.norm(embedding) * np.linalg.norm(reference))
    assert cosine >= 0.9999
    np.testing.assert_allclose(embedding, reference, rtol=0, atol=atol)


def goldens_tell_clips_apart(embeddings: np.ndarray, atol: float) -> None:
    """Different clips' golden embeddings differ by far more than `atol`, so the parity tolerance means something."""
    pairwise = np.abs(embeddings[:, None] - embeddings[None]).max(axis=-1)
    np.fill_diagonal(pairwise, np.inf)
    assert pairwise.min() > 50 * atol


@pytest.fixture(scope="session")
def assert_matches_golden() -> Callable[[np.ndarray, np.ndarray, float], None]:
    """matches_golden, for the parity tests."""
    return matches_golden


@pytest.fixture(scope="session")
def assert_goldens_tell_clips_apart() -> Callable[[np.ndarray, float], None]:
    """goldens_tell_clips_apart, for the parity tests."""
    return goldens_tell_clips_apart
