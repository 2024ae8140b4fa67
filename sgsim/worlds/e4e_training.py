"""A compact e4e trainer for a world's photo encoder: sgsim's StyleEncoder (e4e head) learns W+ codes of a frozen
generator, so `sgsim invert --world` and `--image` edits take one forward pass instead of an optimisation.

The losses follow e4e (Tov et al. 2021, sec. 3-4) at this scale, with pixel MSE standing in for LPIPS (no VGG
weights in a world): on the generator's own samples, whose w is known, a latent loss and pixel reconstruction; on
the renderer's pictures ("photos" the generator never made), pixel reconstruction of G(code) through the frozen
generator; and e4e's delta regulariser, the L2 norm of each row's offset from the base w, which keeps codes near W
and so editable. Samples and renders are drawn afresh every step from (seed, step), so a resumed run repeats an
uninterrupted one. The encoder is written in the authors' checkpoint format (sgsim.style_encoder_file).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from sgsim.identity import IrSeConfig
from sgsim.style_encoder import E4E, StyleEncoder, StyleEncoderConfig
from sgsim.worlds.resumable import ResumableTrainer, seeded_generator

STATE_FORMAT = "sgsim-e4e-state-1"


@dataclass
class E4eConfig:
    """Every setting of a world encoder's training run; saved with its state and compared on resume."""

    steps: int = 900  # encoder updates (the shipped run: 788 s on one CPU thread shared with other work)
    batch_size: int = 12  # generator samples per step, and as many renders
    lr: float = 1e-3  # Adam, cosine-annealed to lr / 10 (e4e trains with Ranger at 1e-4 for 200k steps)
    latent_weight: float = 1.0  # MSE between the code and the sample's known w (e4e's pSp-style latent supervision)
    render_weight: float = 1.0  # pixel MSE of G(code) against a render, beside the samples' pixel MSE (weight 1)
    delta_weight: float = 0.02  # e4e's delta regulariser: mean L2 norm of each row's offset from the base w
    stem_channels: int = 16  # the IR-SE backbone: 3x3 stem, then (channels, units) stages each halving the size
    stages: tuple = ((16, 1), (32, 1), (64, 1))
    se_reduction: int = 4
    seed: int = 0
    checkpoint_every: int = 200
    generator_sha256: str = ""  # the frozen generator's weights (set by the trainer); a resume with another is refused


def encoder_config(config: E4eConfig, G) -> StyleEncoderConfig:
    """The e4e encoder for G: its W+ rows and width, read at G's own resolution (the pyramid's three stages take a
    32 px picture to 16, 8 and 4 px maps, so the world's pictures need no up-sampling)."""
    backbone = IrSeConfig(stem_channels=config.stem_channels, stages=tuple(tuple(stage) for stage in config.stages),
                          se_reduction=config.se_reduction)
    return StyleEncoderConfig(head=E4E, num_ws=G.num_ws, w_dim=G.w_dim, backbone=backbone, input_size=G.img_resolution)


class E4eTrainer(ResumableTrainer):
    """Owns the encoder and its optimiser beside a frozen G; `run` trains to config.steps and checkpoints on the way."""

    state_format, state_kind = STATE_FORMAT, "e4e training"

    def __init__(self, config: E4eConfig, G, photos: Callable[[int, int], torch.Tensor], state_path: str | Path):
        """`photos(count, seed)`: `count` pictures [N, 3, R, R] in [-1, 1] of the world that G did not make."""
        from sgsim.style_encoder_file import generator_sha256

        super().__init__(replace(config, generator_sha256=generator_sha256(G)), state_path)
        self.G = G.eval().requires_grad_(False)
        self.photos = photos
        self.latent_avg = G.mapping.w_avg.detach().reshape(1, -1).expand(G.num_ws, -1).clone()  # start_from_latent_avg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = StyleEncoder(encoder_config(config, G))
        self.optimiser = torch.optim.Adam(self.encoder.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, config.steps, eta_min=config.lr / 10)

    def state_parts(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "optimiser": self.optimiser, "scheduler": self.scheduler}

    def losses(self, z: torch.Tensor, photos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term of the objective and their weighted sum ("loss") on G's samples of latents z [N, z_dim] (their w
        known) and on photos [M, 3, R, R] in [-1, 1]."""
        config, G, count = self.config, self.G, len(z)
        with torch.no_grad():
            w = G.mapping(z, None)
            samples = G.synthesis(w, noise_mode="const")
        offsets = self.encoder(torch.cat([samples, photos]))
        codes = offsets + self.latent_avg
        rebuilt = G.synthesis(codes, noise_mode="const")
        terms = {
            "sample_pixels": F.mse_loss(rebuilt[:count], samples),
            "latent": F.mse_loss(codes[:count], w),
            "render_pixels": F.mse_loss(rebuilt[count:], photos),
            "delta": (offsets[:, 1:] - offsets[:, :1]).norm(dim=-1).mean(),
        }
        terms["loss"] = (terms["sample_pixels"] + config.latent_weight * terms["latent"]
                         + config.render_weight * terms["render_pixels"] + config.delta_weight * terms["delta"])
        return terms

    def train_step(self) -> dict[str, float]:
        """One update on a fresh batch of generator samples (w known) and renders."""
        config = self.config
        z = torch.randn(config.batch_size, self.G.z_dim, generator=seeded_generator(config.seed, self.step, 0))
        photo_seed = int(torch.randint(2**62, (), generator=seeded_generator(config.seed, self.step, 1)))
        terms = self.losses(z, self.photos(config.batch_size, photo_seed))
        self.optimiser.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimiser.step()
        self.scheduler.step()
        self.step += 1
        return {name: float(value.detach()) for name, value in terms.items()}

    def run(self, progress: Callable[[int, int, dict[str, float]], None] | None = None,
            max_steps: int | None = None) -> StyleEncoder:
        """Train to config.steps (or stop after `max_steps` in total); returns the encoder in eval mode."""
        self.encoder.train()
        self.train_to(progress, max_steps)
        return self.encoder.eval()

    def write(self, path: str | Path, options: dict | None = None) -> None:
        """The encoder as an e4e checkpoint (sgsim.style_encoder_file.write_style_encoder) fitted to G, its training
        settings in the options."""
        from sgsim.style_encoder_file import write_style_encoder

        write_style_encoder(path, self.encoder, self.latent_avg, self.G,
                            {"sgsim_training": asdict(self.config), **(options or {})})
