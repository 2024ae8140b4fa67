"""Sound-guided editing: targets, sources, the latent optimisation, mixing, strength sweeps, learned sound directions and
the Editor that composes them."""

from sgsim.editing.directions import SoundDirection, load_directions, save_directions
from sgsim.editing.editor import AppliedEdit, EditResult, Editor
from sgsim.editing.optimise import EditDiverged
from sgsim.editing.presets import PRESETS, EditPreset, PresetChoice
from sgsim.editing.sources import ImageSource, LatentSource, SeedSource
from sgsim.editing.targets import Target

__all__ = ["AppliedEdit", "EditDiverged", "EditPreset", "EditResult", "Editor", "ImageSource", "LatentSource", "PRESETS", "PresetChoice",
           "SeedSource", "SoundDirection", "Target", "load_directions", "save_directions"]
