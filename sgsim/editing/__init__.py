"""Sound-guided editing: targets, sources, the latent optimisation, mixing, strength sweeps, learned sound directions and
the Editor that composes them.

The names below are imported on first use, so that a torch-free module of this package (video_settings) can be read
without loading torch and the networks' code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sgsim.editing.directions import SoundDirection, load_directions, save_directions
    from sgsim.editing.editor import Editor
    from sgsim.editing.results import AppliedEdit, EditResult
    from sgsim.editing.optimise import EditDiverged
    from sgsim.editing.presets import PRESETS, EditPreset, PresetChoice
    from sgsim.editing.sources import ImageSource, LatentSource, MeanSource, SeedSource
    from sgsim.editing.targets import Target

_HOMES = {
    "SoundDirection": "directions", "load_directions": "directions", "save_directions": "directions",
    "AppliedEdit": "results", "EditResult": "results", "Editor": "editor",
    "EditDiverged": "optimise",
    "PRESETS": "presets", "EditPreset": "presets", "PresetChoice": "presets",
    "ImageSource": "sources", "LatentSource": "sources", "MeanSource": "sources", "SeedSource": "sources",
    "Target": "targets",
}
__all__ = ["AppliedEdit", "EditDiverged", "EditPreset", "EditResult", "Editor", "ImageSource", "LatentSource", "MeanSource", "PRESETS", "PresetChoice",
           "SeedSource", "SoundDirection", "Target", "load_directions", "save_directions"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'sgsim.editing' has no attribute {name!r}")
    value = getattr(import_module(f"sgsim.editing.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
