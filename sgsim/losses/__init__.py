"""Loss terms of the edit loop, one file each, weighted by name: adding a term is one file and one line in TERMS."""

from __future__ import annotations

import math

from sgsim.errors import SgsimError
from sgsim.losses.adaptive_latent import AdaptiveLayerMasking
from sgsim.losses.base import EditProblem, LossTerm, StepInputs, StepLoss
from sgsim.losses.clip_direction import ClipDirection
from sgsim.losses.identity import IdentityDistance, IdentityTerm
from sgsim.losses.latent_distance import LatentDistance
from sgsim.losses.perceptual import PerceptualDistance
from sgsim.losses.smoothness import TemporalSmoothness

# name (as weights, presets, the CLI and run.json spell it) -> term class
TERMS: dict[str, type[LossTerm]] = {
    "clip": ClipDirection,
    "latent": LatentDistance,
    "id": IdentityTerm,
    "perceptual": PerceptualDistance,
    "smoothness": TemporalSmoothness,
    "adaptive_latent": AdaptiveLayerMasking,  # the official script's --adaptive_layer_masking (instead of "latent")
}


def register_term(name: str, term: type[LossTerm]) -> None:
    """Make `term` available under `name` (for terms defined outside sgsim)."""
    if name in TERMS and TERMS[name] is not term:
        raise SgsimError(f"a loss term named {name!r} is already registered ({TERMS[name].__name__})")
    if name == "total":
        raise SgsimError("'total' names the weighted sum of the terms; register the term under another name")
    TERMS[name] = term


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """The weights as floats, refusing unknown term names and weights that are not finite and >= 0."""
    unknown = sorted(set(weights) - set(TERMS))
    if unknown:
        raise SgsimError(f"unknown loss term {unknown[0]!r}; the terms are {', '.join(TERMS)}")
    checked = {name: float(value) for name, value in weights.items()}
    bad = {name: value for name, value in checked.items() if not (math.isfinite(value) and value >= 0)}
    if bad:
        raise SgsimError(f"loss weights must be finite numbers >= 0, got {bad}")
    return checked


__all__ = [
    "AdaptiveLayerMasking", "ClipDirection", "EditProblem", "IdentityDistance", "IdentityTerm", "LatentDistance", "LossTerm", "PerceptualDistance",
    "StepInputs", "StepLoss", "TERMS", "TemporalSmoothness", "check_weights", "register_term",
]
