"""A world's trainers resume to the run they would have made uninterrupted: every step's randomness (latents, the
generator's per-pixel noise, pictures, captions) comes from (seed, step), never from the process's global state."""

import pytest
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_gan_run_on_a_gpu_resumes_to_the_uninterrupted_run_and_is_judged_there(tmp_path, monkeypatch):
    from sgsim.worlds.metrics import generator_metrics

    # cuDNN may pick weight-gradient kernels that sum in a varying order; bit-equal runs need its deterministic ones.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    whole = GanTrainer(GanConfig(**TOY_GAN), reals, RESOLUTION, tmp_path / "whole.pt", device="cuda")
    whole.run()
    first = GanTrainer(GanConfig(**TOY_GAN), reals, RESOLUTION, tmp_path / "parts.pt", device="cuda")
    first.run(max_steps=2)
    torch.randn(1000, device="cuda")  # the device's global generator moves on, as in a new process
    second = GanTrainer(GanConfig(**TOY_GAN), reals, RESOLUTION, tmp_path / "parts.pt", device="cuda")
    assert second.resume() and second.step == 2
    second.run()
    for name in ("G", "G_ema", "D"):
        assert states_equal(getattr(whole, name).state_dict(), getattr(second, name).state_dict()), name
    assert next(second.G_ema.parameters()).is_cuda
    assert generator_metrics(second.G_ema, 16)["images"] == 16  # latents drawn on the CPU, pictures judged there


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
