"""The input transform of a StyleGAN3 generator as a camera: a fixed offset and rotation, and a slow motion over time.

StyleGAN3 renders its Fourier-feature input through a user transform, so the picture can be translated and
rotated without texture sticking (Karras et al. 2021); NVIDIA's visualiser animates it. StyleGAN2 has no such input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from sgsim.errors import SgsimError
from stylegan2.families import architecture_of
from stylegan2.networks_stylegan3 import input_transform


@dataclass(frozen=True)
class Camera:
    """Where the camera looks at time t: translate + t * pan (image widths), rotate + t * spin (degrees)."""

    translate: tuple[float, float] = (0.0, 0.0)  # image widths, x to the right and y down
    rotate: float = 0.0  # degrees, counter-clockwise
    pan: tuple[float, float] = (0.0, 0.0)  # image widths per second
    spin: float = 0.0  # degrees per second

    @property
    def is_still(self) -> bool:
        return self.pan == (0.0, 0.0) and self.spin == 0.0

    @property
    def is_identity(self) -> bool:
        return self.is_still and self.translate == (0.0, 0.0) and self.rotate == 0.0

    def transform(self, time: float = 0.0) -> torch.Tensor:
        """The generator's input transform [3, 3] at `time` seconds."""
        return input_transform((self.translate[0] + time * self.pan[0], self.translate[1] + time * self.pan[1]),
                               self.rotate + time * self.spin)

    def transforms(self, times: np.ndarray) -> torch.Tensor:
        """Input transforms [N, 3, 3] at `times` seconds."""
        return torch.stack([self.transform(float(t)) for t in np.asarray(times).reshape(-1)])

    def record(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def is_movable(generator) -> bool:
    """Whether the generator's picture can be moved: a StyleGAN3 one, whose input takes a transform."""
    return architecture_of(generator.init_kwargs).startswith("stylegan3")


def require_movable(generator, camera: Camera) -> None:
    """Refuse a camera that moves or offsets the picture of a generator without an input transform (StyleGAN2)."""
    if not camera.is_identity and not is_movable(generator):
        kind = architecture_of(generator.init_kwargs)
        raise SgsimError(f"--translate, --rotate and --camera move a StyleGAN3 generator's input; this generator is "
                         f"{kind}, whose picture cannot move: drop those options or use a StyleGAN3 generator")
