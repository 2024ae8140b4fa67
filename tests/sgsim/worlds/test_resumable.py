"""A world's trainers resume to the run they would have made uninterrupted: every step's randomness (latents, the
generator's per-pixel noise, pictures, captions) comes from (seed, step), never from the process's global state."""

import torch

from sgsim.worlds.clip_training import ClipConfig, ClipTrainer
from sgsim.worlds.gan_training import GanConfig, GanTrainer
from sgsim.worlds.shapes import RESOLUTION, render_random

TOY_GAN = dict(steps=4, batch_size=4, z_dim=8, w_dim=8, channel_base=128, channel_max=8, r1_every=2, checkpoint_every=1)


def reals(count: int, step: int) -> torch.Tensor:
    return render_random(count, 5 + step)[0]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_gan_run_equals_an_uninterrupted_one(tmp_path):
    whole = GanTrainer(GanConfig(**TOY_GAN), reals, RESOLUTION, tmp_path / "whole.pt")
    whole.run()
    first = GanTrainer(GanConfig(**TOY_GAN), reals, RESOLUTION, tmp_path / "parts.pt")
    first.run(max_steps=2)
    torch.randn(1000)  # the process's global generator moves on, as in a new process
    second = GanTrainer(GanConfig(**TOY_GAN), reals, RESOLUTION, tmp_path / "parts.pt")
    assert second.resume() and second.step == 2
    second.run()
    for name in ("G", "G_ema", "D"):
        assert states_equal(getattr(whole, name).state_dict(), getattr(second, name).state_dict()), name


def test_a_resumed_clip_run_equals_an_uninterrupted_one(tmp_path):
    config = dict(steps=3, batch_size=8, warmup=1, checkpoint_every=1)
    whole = ClipTrainer(ClipConfig(**config), tmp_path / "whole.pt")
    whole.run()
    first = ClipTrainer(ClipConfig(**config), tmp_path / "parts.pt")
    first.run(max_steps=1)
    torch.randn(1000)
    second = ClipTrainer(ClipConfig(**config), tmp_path / "parts.pt")
    assert second.resume()
    second.run()
    assert states_equal(whole.model.state_dict(), second.model.state_dict())
