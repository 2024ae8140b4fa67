"""A compact StyleGAN2 trainer for a world's small generator: sgsim's own Generator against stylegan2's
Discriminator, the non-saturating logistic loss, lazy R1 on reals and an EMA copy of G (the one that ships).

Real images come from the world's renderer, drawn afresh every step from (seed, step); latents likewise, so the
state to save is the step counter beside the networks and optimisers, and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from sgsim.worlds.resumable import ResumableTrainer, seeded_generator
from stylegan2.discriminator import Discriminator
from stylegan2.networks import Generator

STATE_FORMAT = "sgsim-gan-state-1"


@dataclass
class GanConfig:
    """Every setting of a generator training run; saved with its state and compared on resume."""

    steps: int = 10000  # generator (and discriminator) updates
    batch_size: int = 32
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    channel_base: int = 2048  # channels min(channel_base // resolution, channel_max), for G and D alike
    channel_max: int = 64
    lr: float = 0.0025  # Adam, betas (0, 0.99): StyleGAN2's
    # R1 weight. StyleGAN2-ADA's CIFAR-10 value (0.01) let D outrun G on these flat pictures (D loss near 0.2, real
    # logits 2 to 4) and G collapsed onto two colours (5 of 12 combinations by step 2500); a firmer D is needed.
    r1_gamma: float = 0.5
    r1_every: int = 16  # lazy regularisation interval
    ema_images: int = 10000  # EMA half-life in images (ADA: ema_kimg = batch * 10 / 32)
    ema_rampup: float = 0.05  # half-life at most this fraction of the images seen so far
    seed: int = 0
    checkpoint_every: int = 500


def build_networks(config: GanConfig, resolution: int) -> tuple[Generator, Discriminator]:
    """G and D at `resolution`, initialised from the config's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        G = Generator(z_dim=config.z_dim, c_dim=0, w_dim=config.w_dim, img_resolution=resolution, img_channels=3,
                      mapping_kwargs={"num_layers": config.mapping_layers},
                      synthesis_kwargs={"channel_base": config.channel_base, "channel_max": config.channel_max})
        D = Discriminator(resolution, 3, channel_base=config.channel_base, channel_max=config.channel_max)
    return G, D


class GanTrainer(ResumableTrainer):
    """Owns G, G_ema, D and their optimisers; `run` trains to config.steps and checkpoints on the way."""

    state_format, state_kind = STATE_FORMAT, "generator training"

    def __init__(self, config: GanConfig, real_images: Callable[[int, int], torch.Tensor], resolution: int, state_path: str | Path,
                 device: str | torch.device = "cpu"):
        super().__init__(config, state_path)
        self.real_images, self.device = real_images, torch.device(device)
        self.G, self.D = (network.to(self.device) for network in build_networks(config, resolution))
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # Lazy R1: the discriminator's Adam sees its regularised steps as part of each update (StyleGAN2, C.3).
        ratio = config.r1_every / (config.r1_every + 1)
        self.G_optimiser = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=(0.0, 0.99), eps=1e-8)
        self.D_optimiser = torch.optim.Adam(self.D.parameters(), lr=config.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)

    def state_parts(self) -> dict[str, Any]:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D, "G_optimiser": self.G_optimiser, "D_optimiser": self.D_optimiser}

    def _latents(self, *salt: int) -> torch.Tensor:
        draws = seeded_generator(self.config.seed, self.step, *salt)
        return torch.randn(self.config.batch_size, self.config.z_dim, generator=draws).to(self.device)

    def train_step(self) -> dict[str, float]:
        """One generator update, one discriminator update and, every r1_every steps, one lazy R1 update; the
        generator's per-pixel noise is drawn from (seed, step) too, so a resumed run repeats an uninterrupted one (on a
        GPU, one on the same device; latents and pictures are drawn on the CPU either way)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seeded_generator(self.config.seed, self.step, 2).initial_seed())
            return self._train_step()

    def _train_step(self) -> dict[str, float]:
        config = self.config
        # Generator: make D call its images real (non-saturating: softplus(-D(G(z)))).
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        fake = self.G(self._latents(0), noise_mode="random", update_emas=True)
        g_loss = F.softplus(-self.D(fake)).mean()
        self.G_optimiser.zero_grad(set_to_none=True)
        g_loss.backward()
        self.G_optimiser.step()
        # Discriminator: softplus(D(fake)) + softplus(-D(real)).
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(self._latents(1), noise_mode="random")
        real = self.real_images(config.batch_size, self.step).to(self.device)
        real_logits = self.D(real)
        d_loss = F.softplus(self.D(fake)).mean() + F.softplus(-real_logits).mean()
        self.D_optimiser.zero_grad(set_to_none=True)
        d_loss.backward()
        self.D_optimiser.step()
        values = {"G": float(g_loss.detach()), "D": float(d_loss.detach()), "real_logit": float(real_logits.detach().mean())}
        if self.step % config.r1_every == 0:  # lazy R1: gamma/2 * |grad D(real)|^2, scaled by the interval
            real = real.detach().requires_grad_(True)
            gradient, = torch.autograd.grad(self.D(real).sum(), real, create_graph=True)
            penalty = gradient.square().sum(dim=(1, 2, 3)).mean()
            self.D_optimiser.zero_grad(set_to_none=True)
            (penalty * (config.r1_gamma / 2) * config.r1_every).backward()
            self.D_optimiser.step()
            values["R1"] = float(penalty.detach())
        self._update_ema()
        self.step += 1
        return values

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema <- G_ema + (1 - beta) (G - G_ema), with ADA's half-life and ramp-up; buffers (w_avg) copied."""
        seen = (self.step + 1) * self.config.batch_size
        half_life = min(self.config.ema_images, seen * self.config.ema_rampup)
        beta = 0.5 ** (self.config.batch_size / max(half_life, 1e-8))
        for ema, live in zip(self.G_ema.parameters(), self.G.parameters()):
            ema.copy_(live.lerp(ema, beta))
        for ema, live in zip(self.G_ema.buffers(), self.G.buffers()):
            ema.copy_(live)

    def run(self, progress: Callable[[int, int, dict[str, float]], None] | None = None, max_steps: int | None = None) -> Generator:
        """Train to config.steps (or stop after `max_steps` in total, as a kill would); returns G_ema."""
        self.train_to(progress, max_steps)
        return self.G_ema
