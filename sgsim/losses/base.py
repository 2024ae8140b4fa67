"""What a loss term of the edit loop is: an object that prepares itself once per optimisation, then scores every step.

A term sees the whole batch, so a term may couple its samples (several images sharing one edit, neighbouring
video keyframes); it returns one value per sample, and the optimiser minimises the weighted sum over terms
and samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Mapping, Optional, Protocol

import torch


@dataclass
class EditProblem:
    """What one optimisation works on, handed to every term once before the first step."""

    generator: object  # stylegan2.Generator: synthesis(ws, noise_mode='const') -> NCHW in [-1, 1]
    clip: object  # CLIP image encoder at the edit's precision: encode_image(images in [-1, 1]) -> [N, embed_dim]
    directions: torch.Tensor  # [N, embed_dim] L2-normalised CLIP-space targets, one per latent
    source_latents: torch.Tensor  # [N, num_ws, w_dim] W+ latents the optimisation starts from
    networks: Mapping[str, object] = field(default_factory=dict)  # helper networks by name: "identity", "lpips"
    # [N] how much each sample's target counts in the terms that aim at `directions` (0: the sample has no target,
    # e.g. a silent video keyframe); None: 1 for every sample
    target_weights: Optional[torch.Tensor] = None
    _source_images: Optional[torch.Tensor] = field(default=None, repr=False)

    def subset(self, samples: torch.Tensor) -> "EditProblem":
        """The same problem for the samples `samples` only (a minibatch), sharing the source images rendered so far."""
        images = self._source_images[samples] if self._source_images is not None else None
        weights = self.target_weights[samples] if self.target_weights is not None else None
        return EditProblem(self.generator, self.clip, self.directions[samples], self.source_latents[samples], self.networks,
                           target_weights=weights, _source_images=images)

    def source_images(self) -> torch.Tensor:
        """G(source_latents) [N, 3, H, W], rendered once on first use, without gradient."""
        if self._source_images is None:
            with torch.no_grad():
                self._source_images = self.generator.synthesis(self.source_latents, noise_mode="const")
        return self._source_images


@dataclass
class StepInputs:
    """What a term scores at one step; both tensors carry the gradient to the optimised variables."""

    latents: torch.Tensor  # [N, num_ws, w_dim] W+ latents of this step
    images: torch.Tensor  # [N, 3, H, W] their images in [-1, 1]


StepLoss = Callable[[StepInputs], torch.Tensor]  # -> [N] per-sample values


class LossTerm(Protocol):
    """One term of the edit loss. `prepare` does the per-optimisation work once (embed the source, ...) and
    returns the function the optimiser calls at every step."""

    needs: ClassVar[tuple[str, ...]]  # helper networks (keys of EditProblem.networks) the term cannot work without

    def prepare(self, problem: EditProblem) -> StepLoss: ...
