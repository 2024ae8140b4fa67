"""The shapes world's small CLIP: an open_clip model config the project registers (embed_dim 512, the size the
audio encoders output), trained contrastively on renders and their captions.

Pictures and captions are drawn afresh every step from (seed, step), so a resumed run repeats an uninterrupted one.
A caption counts as a positive of every picture in the batch it is true of ("a circle" of every circle), not of its
own picture alone: a caption that names one attribute would otherwise teach that pictures sharing it differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sgsim.errors import SgsimError
from sgsim.training.contrastive import symmetric_info_nce
from sgsim.worlds.resumable import ResumableTrainer, seeded_generator
from sgsim.worlds.shapes import caption_truth, captions, draw_scenes, render, with_off_colours

CLIP_MODEL = "sgsim-shapes-clip"  # the open_clip name the config below is registered under
CLIP_CONFIG = Path(__file__).with_name(f"{CLIP_MODEL}.json")
STATE_FORMAT = "sgsim-clip-state-1"


@dataclass
class ClipConfig:
    """Every setting of a CLIP training run; saved with its state and compared on resume."""

    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3  # AdamW peak, after a linear warm-up, cosine to 0
    warmup: int = 200
    weight_decay: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500
    off_colour: float = 0.25  # share of pictures recoloured in none of the four colours (shapes.with_off_colours)


def register_clip_config() -> str:
    """Make the world's CLIP config known to open_clip (idempotent); returns its model name."""
    import open_clip

    if CLIP_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CLIP_CONFIG)  # open_clip names a model after its config file's stem
    return CLIP_MODEL


def build_clip(seed: int) -> torch.nn.Module:
    """The world's open_clip model with its own seeded initialisation."""
    import open_clip

    register_clip_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model(CLIP_MODEL, pretrained=None)


class ClipTrainer(ResumableTrainer):
    """Owns the CLIP model, its optimiser and tokenizer; `run` trains to config.steps and checkpoints on the way."""

    state_format, state_kind = STATE_FORMAT, "CLIP training"

    def __init__(self, config: ClipConfig, state_path: str | Path):
        import open_clip
        from encoders.clip import CLIP_MEAN, CLIP_STD

        super().__init__(config, state_path)
        self.model = build_clip(config.seed)
        self.tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        self.mean, self.std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        rest = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        self.optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                                           lr=config.lr, betas=(0.9, 0.98), eps=1e-6)

    def state_parts(self) -> dict[str, Any]:
        return {"model": self.model, "optimiser": self.optimiser}

    def _lr(self) -> float:
        config = self.config
        if self.step < config.warmup:
            return config.lr * (self.step + 1) / config.warmup
        progress = (self.step - config.warmup) / max(1, config.steps - config.warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Renders in [-1, 1] to CLIP input, normalised as sgsim's ClipModel does at edit time."""
        return ((images + 1) / 2 - self.mean) / self.std

    def train_step(self) -> dict[str, float]:
        """One contrastive step on a fresh batch of renders and captions."""
        draws = seeded_generator(self.config.seed, self.step, 1)
        scene = draw_scenes(self.config.batch_size, seed=int(torch.randint(2**62, (), generator=seeded_generator(self.config.seed, self.step))))
        scene = with_off_colours(scene, torch.rand(len(scene), generator=draws) < self.config.off_colour, draws)
        images, texts = render(scene), captions(scene, draws)
        image_features = torch.nn.functional.normalize(self.model.encode_image(self.pixels(images)), dim=-1)
        text_features = torch.nn.functional.normalize(self.model.encode_text(self.tokenizer(texts)), dim=-1)
        scale = self.model.logit_scale.exp().clamp(max=100)
        loss = symmetric_info_nce(image_features, text_features, scale, positives=caption_truth(texts, scene))
        if not torch.isfinite(loss):
            raise SgsimError(f"CLIP step {self.step}: the loss is {float(loss)}; lower the learning rate")
        for group in self.optimiser.param_groups:
            group["lr"] = self._lr()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.step += 1
        return {"loss": float(loss.detach()), "scale": float(scale.detach())}

    def run(self, progress: Callable[[int, int, dict[str, float]], None] | None = None, max_steps: int | None = None) -> torch.nn.Module:
        """Train to config.steps (or stop after `max_steps` in total); returns the model in eval mode."""
        self.model.train()
        self.train_to(progress, max_steps)
        return self.model.eval()
