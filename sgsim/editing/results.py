"""What the Editor returns: an edit's images, latents, losses and settings (EditResult), and an applied direction's
images (AppliedEdit); tensors on the CPU, images in [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from sgsim.editing.targets import Target


@dataclass
class AppliedEdit:
    """Images of one source moved along learned directions, one per strength; tensors on the CPU, images in [-1, 1]."""

    images: torch.Tensor  # [S, 3, H, W]
    latents: torch.Tensor  # [S, num_ws, w_dim]: w_src + strength * sum_j weight_j * offset_j
    source_latent: torch.Tensor  # [num_ws, w_dim]
    strengths: list[float]
    offset: torch.Tensor  # [num_ws, w_dim]: the combined offset applied at strength 1
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # noise buffers the images were made with, if not G's own


@dataclass
class EditResult:
    """Everything one edit produced; tensors live on the CPU, images in [-1, 1]."""

    images: torch.Tensor  # [T, S, 3, H, W]: per target, per strength
    latents: torch.Tensor  # [T, S, num_ws, w_dim]: the W+ latents of `images`
    edited_latents: torch.Tensor  # [T, num_ws, w_dim]: the optimised (and, for mix='layers', mixed) latents, strength 1
    source_latent: torch.Tensor  # [num_ws, w_dim]
    source_image: torch.Tensor  # [3, H, W]
    strengths: torch.Tensor  # [T, S]: strengths applied, after the loudness scale
    losses: dict[str, np.ndarray]  # "total" and every loss term ("clip", "latent", "id", ...) -> [steps, len(guides)]
    guides: list[str]  # what each optimised latent aimed at (one per target, two per target for mix='layers')
    targets: list[Target]
    settings: dict  # every setting of the run, with the defaults filled in
    frames: list[torch.Tensor] = field(default_factory=list)  # [len(guides), 3, H, W] every `record_every` steps
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # noise buffers the images were made with, if not G's own
    input_image: Optional[torch.Tensor] = None  # [3, H, W]: the photo an image source was inverted from, as cropped
    networks: dict = field(default_factory=dict)  # the Editor's networks for run.json (Editor.recorded_networks)

    def save(self, folder: Union[str, Path], video: Optional[str] = None) -> list[str]:
        """Write what `sgsim edit` writes (images, comparison.png, latents.npz, run.json; `video` 'mp4' or 'gif'
        for the optimisation video) into `folder`; returns the file names."""
        from sgsim.editing.folder import write_edit_folder

        return write_edit_folder(folder, self, video=video)

    def pil(self, target: Optional[int] = None, strength: int = 0):
        """A Pillow picture: the labelled comparison grid, or with `target` that target's image at strength index `strength`."""
        from PIL import Image

        from sgsim.editing.folder import comparison_picture
        from sgsim.outputs import to_uint8

        if target is None:
            return comparison_picture(self)
        return Image.fromarray(to_uint8(self.images[target, strength])[0])

    def __repr__(self) -> str:
        T, S, _, H, W = self.images.shape
        strengths = ", ".join(f"{float(s):g}" for s in self.strengths.flatten()[:8]) + (", ..." if self.strengths.numel() > 8 else "")
        losses = ", ".join(f"{name} {float(values[-1].mean()):.4f}" for name, values in self.losses.items())
        return (f"EditResult({T} target{'s' * (T != 1)} x {S} strength{'s' * (S != 1)} of {W}x{H} images; "
                f"guides {self.guides}; strengths [{strengths}]; final losses {{{losses}}}; "
                f"{self.settings.get('steps')} steps, {len(self.frames)} frames)")
