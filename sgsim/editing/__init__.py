"""Sound-guided editing: targets, sources, the latent optimisation, mixing, strength sweeps and the Editor that composes them."""

from sgsim.editing.editor import EditResult, Editor
from sgsim.editing.optimise import EditDiverged
from sgsim.editing.presets import PRESETS, EditPreset, PresetChoice
from sgsim.editing.sources import ImageSource, LatentSource, SeedSource
from sgsim.editing.targets import Target

__all__ = ["EditDiverged", "EditPreset", "EditResult", "Editor", "ImageSource", "LatentSource", "PRESETS", "PresetChoice",
           "SeedSource", "Target"]
