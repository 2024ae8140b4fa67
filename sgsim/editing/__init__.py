"""Sound-guided editing: targets, the latent optimisation, mixing, strength sweeps and the Editor that composes them."""

from sgsim.editing.editor import EditResult, Editor
from sgsim.editing.optimise import EditDiverged
from sgsim.editing.presets import PRESETS, EditPreset
from sgsim.editing.targets import Target

__all__ = ["EditDiverged", "EditPreset", "EditResult", "Editor", "PRESETS", "Target"]
