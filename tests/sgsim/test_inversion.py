"""sgsim.inversion: the ADA projector on a tiny generator reconstructs a reachable image, is seeded, and leaves G as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError
from sgsim.inversion import InversionProgress, invert, noise_regularization, w_statistics
from sgsim.lpips import LpipsDistance
from stylegan2.errors import NetworkConfigError
from stylegan2.noise import swapped_noise
from tolerances import LAMBDA, U, parity_tolerance

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def tiny_G(random_weights):
    from stylegan2 import Generator

    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16})
    G.load_state_dict(random_weights(G.state_dict(), 4))
    return G.eval()


@pytest.fixture(scope="module")
def reachable_target(tiny_G):
    """An image the generator can make exactly: a w off the mean, rendered with the generator's own noise."""
    w_avg, _ = w_statistics(tiny_G)
    with torch.no_grad():
        w = w_avg + 0.5 * torch.randn(1, 1, 16, generator=torch.Generator().manual_seed(9))
        return tiny_G.synthesis(w.repeat(1, tiny_G.num_ws, 1), noise_mode="const")


@pytest.fixture(scope="module")
def tiny_lpips(random_weights):
    net = LpipsDistance(channels=(4, 8, 8, 8, 8))
    state = random_weights(net.state_dict(), 6)
    state.update({k: v.abs() for k, v in state.items() if k.startswith("lpips")})
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def _pixel_inversion(G, target, steps, seed=0):
    with pytest.warns(UserWarning, match="without LPIPS"):
        return invert(G, target, steps=steps, seed=seed)


def _start_image(G):
    """Where the projector starts (w_avg), rendered with the generator's own noise, i.e. the target's noise."""
    with torch.no_grad():
        return G.synthesis(w_statistics(G)[0].repeat(1, G.num_ws, 1), noise_mode="const")


@pytest.fixture(scope="module")
def pixel_run(tiny_G, reachable_target):
    """The generator's state and flags before one 80-step inversion without LPIPS, and that inversion's result."""
    before = {k: v.clone() for k, v in tiny_G.state_dict().items()}
    flags = [p.requires_grad for p in tiny_G.parameters()]
    return before, flags, _pixel_inversion(tiny_G, reachable_target, steps=80)


def test_pixel_loss_inversion_reduces_the_loss_substantially(tiny_G, reachable_target, pixel_run):
    result = pixel_run[2]
    assert len(result.losses) == 80 and not result.used_lpips
    assert min(result.losses[-3:]) < 0.01 * result.losses[0]
    start_error = float((_start_image(tiny_G) - reachable_target).square().mean())
    assert float((result.image - reachable_target).square().mean()) < 0.2 * start_error


def test_lpips_inversion_reduces_the_loss(tiny_G, reachable_target, tiny_lpips):
    progress = []
    result = invert(tiny_G, reachable_target, steps=60, lpips=tiny_lpips, callback=progress.append)
    assert result.used_lpips
    assert [(p.step, p.loss) for p in progress] == list(enumerate(result.losses, start=1))
    assert {(p.stage, p.total) for p in progress} == {("w", 60)}
    assert min(result.losses[-3:]) < 0.01 * result.losses[0]
    assert float(tiny_lpips(result.image, reachable_target)) < 0.5 * float(tiny_lpips(_start_image(tiny_G), reachable_target))


@pytest.fixture(scope="module")
def w_plus_target(tiny_G):
    """An image only W+ reaches: a different w per layer, rendered with the generator's own noise."""
    w_avg, _ = w_statistics(tiny_G)
    with torch.no_grad():
        w = w_avg + 0.7 * torch.randn(1, tiny_G.num_ws, 16, generator=torch.Generator().manual_seed(11))
        return tiny_G.synthesis(w, noise_mode="const")


@pytest.fixture(scope="module")
def w_and_refined_runs(tiny_G, w_plus_target):
    """80 W steps alone, and the same 80 W steps followed by 60 W+ steps, each with its progress reports."""
    runs = []
    for refine_steps in (0, 60):
        progress = []
        with pytest.warns(UserWarning, match="without LPIPS"):
            result = invert(tiny_G, w_plus_target, steps=80, refine_steps=refine_steps, callback=progress.append)
        runs.append((result, progress))
    return runs


def test_w_plus_refinement_frees_every_layer_and_fits_closer(tiny_G, w_plus_target, w_and_refined_runs):
    (w_only, _), (refined, _) = w_and_refined_runs
    assert torch.equal(w_only.w_plus, w_only.w_plus[:, :1].expand_as(w_only.w_plus))
    assert not torch.equal(refined.w_plus, refined.w_plus[:, :1].expand_as(refined.w_plus))
    assert refined.losses[:80] == w_only.losses  # the refinement starts from the very same W fit
    assert len(refined.losses) == 140 and refined.losses[-1] < 0.1 * refined.losses[80]
    w_error = float((w_only.image - w_plus_target).square().mean())
    assert float((refined.image - w_plus_target).square().mean()) < 0.8 * w_error
    with torch.no_grad(), swapped_noise(tiny_G, refined.noise):
        torch.testing.assert_close(tiny_G.synthesis(refined.w_plus, noise_mode="const"), refined.image)


def test_progress_reports_every_step_of_both_stages(w_and_refined_runs):
    refined, progress = w_and_refined_runs[1]
    assert [p.stage for p in progress] == ["w"] * 80 + ["w+"] * 60
    assert [(p.step, p.loss) for p in progress] == list(enumerate(refined.losses, start=1))
    assert {p.total for p in progress} == {140}
    elapsed = [p.elapsed_s for p in progress]
    assert elapsed == sorted(elapsed) and progress[-1].eta_s == 0.0


def test_eta_is_the_mean_pace_times_the_steps_left():
    assert InversionProgress("w", step=10, total=40, loss=1.0, elapsed_s=5.0).eta_s == pytest.approx(15.0)
    assert InversionProgress("w+", step=40, total=40, loss=1.0, elapsed_s=20.0).eta_s == 0.0


@pytest.mark.parametrize("settings", [{"steps": 0}, {"refine_steps": -1}, {"lr": 0.0}, {"refine_lr": -0.01}])
def test_bad_step_counts_and_rates_are_errors(tiny_G, reachable_target, settings):
    with pytest.raises(SgsimError, match="inversion needs"):
        invert(tiny_G, reachable_target, **{"steps": 1, **settings})


# The projector is 40 Adam steps, not one formula: a rounding difference can flip a discrete choice on the way (a
# max-pool winner, a ReLU's sign, the sign of a near-zero gradient that Adam scales to a full step), after which
# the run settles on a neighbouring fit. Moving the target by one float32 ulp (1 + 2^-24 noise) does exactly
# that for 2 of 12 noise draws: w moves by 2.3e-3 relative L2 (its image by 61 dB PSNR), the others by 5e-6.
# So the bound is a few such switches: 1e-2 relative L2 on w and 50 dB on its image (G's own noise). Real
# mistakes land far outside: Adam's beta2 0.99 for 0.999 gives 2.5e-2 and 48 dB, lr 0.11 for 0.1 0.12 and 28 dB.
PROJECTOR_W_TOLERANCE = 1e-2
PROJECTOR_MIN_PSNR_DB = 50.0


@pytest.fixture(scope="module")
def nvidia_projector_case(random_weights):
    """The projector golden (tests/data/inversion/README.md), its generator, and its seeded LPIPS stand-in."""
    from stylegan2 import load_generator

    golden = dict(np.load(DATA / "inversion" / "ada_projector_skip32.npz"))
    lpips = LpipsDistance(channels=(4, 8, 8, 16, 16))
    state = random_weights(lpips.state_dict(), 3)
    state.update({k: v.abs() for k, v in state.items() if k.startswith("lpips")})
    lpips.load_state_dict(state)
    return golden, load_generator(DATA / "stylegan2" / "ada_skip32.pkl"), lpips.eval()


def assert_projects_as_nvidia(G, golden, w: torch.Tensor) -> None:
    """w within PROJECTOR_W_TOLERANCE of NVIDIA's (relative L2), and its image within PROJECTOR_MIN_PSNR_DB of theirs."""
    from sgsim.editing.precision import image_psnr
    from tolerances import relative_l2

    expected = torch.from_numpy(golden["w"])
    error = relative_l2(w.numpy(), expected.numpy())
    assert error <= PROJECTOR_W_TOLERANCE, f"w differs from NVIDIA's by {error:.3g} relative L2"
    with torch.no_grad():
        images = [G.synthesis(v.view(1, 1, -1).repeat(1, G.num_ws, 1), noise_mode="const") for v in (w, expected)]
    assert image_psnr(*images) >= PROJECTOR_MIN_PSNR_DB


def project(case, **settings) -> torch.Tensor:
    golden, G, lpips = case
    target = settings.pop("target", torch.from_numpy(golden["target"]))
    return invert(G, target, steps=int(golden["steps"]), lpips=lpips, seed=int(golden["seed"]), **settings).w_plus[0, 0]


def test_matches_nvidia_projector_on_the_ada_parity_generator(nvidia_projector_case):
    """NVIDIA's projector, run on ada_skip32 with a seeded LPIPS stand-in (tests/data/inversion/README.md)."""
    golden, G, _ = nvidia_projector_case
    assert_projects_as_nvidia(G, golden, project(nvidia_projector_case))


@pytest.mark.parametrize("draw", [7, 8])
def test_an_ulp_moved_target_stays_within_the_projector_tolerance(nvidia_projector_case, draw):
    """The draws that switch the run to a neighbouring fit on some CPUs: another CPU's rounding must pass too."""
    golden, G, _ = nvidia_projector_case
    target = torch.from_numpy(golden["target"])
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(draw))
    assert_projects_as_nvidia(G, golden, project(nvidia_projector_case, target=target + 2.0**-24 * noise * target.abs()))


@pytest.mark.parametrize("mistake", [("ADAM_BETAS", (0.9, 0.99)), ("INITIAL_NOISE_FACTOR", 0.055),
                                     ("REGULARIZE_NOISE_WEIGHT", 1e4)], ids=lambda m: m if isinstance(m, str) else "")
def test_a_wrong_projector_fails_the_comparison(nvidia_projector_case, monkeypatch, mistake):
    import sgsim.inversion

    golden, G, _ = nvidia_projector_case
    monkeypatch.setattr(sgsim.inversion, *mistake)
    with pytest.raises(AssertionError, match="relative L2"):
        assert_projects_as_nvidia(G, golden, project(nvidia_projector_case))


def test_result_shapes_and_re_rendering_with_the_returned_noise(tiny_G, pixel_run):
    result = pixel_run[2]
    assert result.w_plus.shape == (1, tiny_G.num_ws, 16)
    assert torch.equal(result.w_plus, result.w_plus[:, :1].expand_as(result.w_plus))  # one w broadcast to all layers
    assert result.image.shape == (1, 3, 16, 16)
    names = {name for name, _ in tiny_G.synthesis.named_buffers() if name.endswith("noise_const")}
    assert set(result.noise) == names
    # Renormalised after every step: the mean and the second moment are sums of at most 16 x 16 values of size ~1,
    # so they hold to LAMBDA sqrt(256) u = 3.8e-6; 1e-4 on the second moment also covers rsqrt's few ulp, and a
    # Bessel-corrected variance (1/255 off for the largest buffer) still fails.
    for buffer in result.noise.values():
        assert abs(float(buffer.mean())) < 1e-5 and abs(float(buffer.square().mean()) - 1) < 1e-4
    with torch.no_grad(), swapped_noise(tiny_G, result.noise):
        torch.testing.assert_close(tiny_G.synthesis(result.w_plus, noise_mode="const"), result.image)


def test_generator_is_left_as_it_was(tiny_G, pixel_run):
    before, flags, _ = pixel_run
    after = tiny_G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in tiny_G.parameters()] == flags
    assert all(p.grad is None for p in tiny_G.parameters())


def test_deterministic_per_seed(tiny_G, reachable_target):
    first = _pixel_inversion(tiny_G, reachable_target, steps=4, seed=3)
    again = _pixel_inversion(tiny_G, reachable_target, steps=4, seed=3)
    other = _pixel_inversion(tiny_G, reachable_target, steps=4, seed=4)
    assert torch.equal(first.w_plus, again.w_plus) and first.losses == again.losses
    assert all(torch.equal(first.noise[k], again.noise[k]) for k in first.noise)
    assert not torch.equal(first.w_plus, other.w_plus)


def test_lpips_sees_large_images_area_downsampled_to_256(tiny_lpips):
    from sgsim.inversion import _lpips_loss

    gen = torch.Generator().manual_seed(5)
    target = torch.rand(1, 3, 512, 512, generator=gen) * 2 - 1
    image = torch.rand(1, 3, 512, 512, generator=gen) * 2 - 1
    loss = _lpips_loss(tiny_lpips, target)
    expected = tiny_lpips(F.avg_pool2d(image, 2), F.avg_pool2d(target, 2))  # 'area' halving is 2x2 averaging
    torch.testing.assert_close(loss(image), expected[0])
    assert float(loss(target)) == 0.0


def test_w_statistics_follow_the_projector_recipe(tiny_G):
    z = torch.from_numpy(np.random.RandomState(123).randn(500, 16)).float()
    with torch.no_grad():
        w = tiny_G.mapping(z, None)[:, 0]
    w_avg, w_std = w_statistics(tiny_G, samples=500)
    # w_statistics maps z in chunks, so its w differ from these by the mapping's rounding; then both average 500 of
    # them in their own order (a sum of 500 terms: LAMBDA sqrt(500) u of the magnitudes, for each side).
    mapping_error = parity_tolerance(tiny_G.mapping) * w.abs().max()
    assert bool(((w_avg - w.mean(0).view(1, 1, 16)).abs() <= 2 * LAMBDA * 500**0.5 * U * w.abs().mean(0) + mapping_error).all())
    # w_std^2 sums 500 x 16 non-negative terms on each side (2 LAMBDA sqrt(8000) u, halved by the square root); the
    # w's own difference moves the spread by at most that difference over the spread: RMS |w| / w_std times it.
    spread_gain = float(w.square().sum(1).mean().sqrt()) / w_std
    relative = LAMBDA * (500 * 16) ** 0.5 * U + parity_tolerance(tiny_G.mapping) * spread_gain
    assert w_std == pytest.approx(float(((w - w.mean(0)) ** 2).sum(1).mean()) ** 0.5, rel=relative)


def test_noise_regularization_penalises_correlated_noise_only():
    # A constant buffer has autocorrelation 1 at every shift and octave: 16 px and 8 px, two directions each.
    assert float(noise_regularization([torch.ones(16, 16)])) == pytest.approx(4.0)
    white = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    assert float(noise_regularization([white])) < 0.01


def test_swapped_noise_rejects_noise_of_another_generator(tiny_G):
    with pytest.raises(NetworkConfigError, match="no noise buffer"):
        with swapped_noise(tiny_G, {"b1024.conv0.noise_const": torch.zeros(1)}):
            pass
    originals = (tiny_G.synthesis.b8.conv0.noise_const, tiny_G.synthesis.b4.conv1.noise_const)
    with pytest.raises(NetworkConfigError, match="shaped"):
        with swapped_noise(tiny_G, {"b8.conv0.noise_const": torch.zeros(8, 8), "b4.conv1.noise_const": torch.zeros(5, 5)}):
            pass
    assert tiny_G.synthesis.b8.conv0.noise_const is originals[0]  # the swap made before the error is undone
    assert tiny_G.synthesis.b4.conv1.noise_const is originals[1]


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 3, 32, 32), (2, 3, 16, 16)])
def test_target_of_the_wrong_shape_is_an_error(tiny_G, shape):
    with pytest.raises(SgsimError, match=r"\[1, 3, 16, 16\]"):
        invert(tiny_G, torch.zeros(shape), steps=1)


# `sgsim invert`


def test_cli_writes_input_reconstruction_and_latent(tmp_path, monkeypatch, tiny_generator_file):
    from click.testing import CliRunner
    from PIL import Image

    from sgsim.cli import main

    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))  # no LPIPS weights: the pixel loss, with a warning
    Image.new("RGB", (48, 40), (200, 120, 40)).save(tmp_path / "photo.jpg")
    out = tmp_path / "run"
    args = ["invert", "--image", str(tmp_path / "photo.jpg"), "--out", str(out),
            "--generator", str(tiny_generator_file), "--steps", "3", "--refine-steps", "2", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "note: inverting without LPIPS-VGG16 weights" in result.output  # the CLI's form of the library's notice
    assert sorted(p.name for p in out.iterdir()) == ["input.png", "latent.npz", "reconstruction.png", "run.json"]
    with Image.open(out / "input.png") as source, Image.open(out / "reconstruction.png") as inverted:
        assert source.size == inverted.size == (32, 32)
    with np.load(out / "latent.npz") as stored:
        assert stored["w"].shape == (1, 8, 32)  # 32 px: 2 * log2(32) - 2 W+ rows
        assert not np.array_equal(stored["w"][0, 0], stored["w"][0, -1])  # refined per layer
        noise = {key.removeprefix("noise."): stored[key].shape for key in stored if key.startswith("noise.")}
    assert noise == {"b4.conv1.noise_const": (4, 4), "b8.conv0.noise_const": (8, 8), "b8.conv1.noise_const": (8, 8),
                     "b16.conv0.noise_const": (16, 16), "b16.conv1.noise_const": (16, 16),
                     "b32.conv0.noise_const": (32, 32), "b32.conv1.noise_const": (32, 32)}


def test_cli_reports_a_bad_image_in_one_line(tmp_path, tiny_generator_file):
    from click.testing import CliRunner

    from sgsim.cli import main

    (tmp_path / "notes.png").write_text("not an image")
    args = ["invert", "--image", str(tmp_path / "notes.png"), "--out", str(tmp_path / "run"),
            "--generator", str(tiny_generator_file), "--steps", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "notes.png is not an image" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_cli_missing_generator_weights_is_the_one_line_checkpoints_message(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sgsim.cli import main

    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))
    args = ["invert", "--image", str(tmp_path / "x.png"), "--out", str(tmp_path / "run"), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "ffhq" in result.output and "Traceback" not in result.output


def test_cli_aligns_the_face_of_a_photo_when_asked(tmp_path, monkeypatch, tiny_generator_file):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from click.testing import CliRunner
    from PIL import Image

    from sgsim.alignment import read_face
    from sgsim.cli import main
    from sgsim.outputs import to_uint8

    monkeypatch.setenv("SGSIM_HOME", str(tmp_path / "empty-cache"))
    photo = DATA / "faces" / "astronaut.jpg"
    args = ["invert", "--image", str(photo), "--out", str(tmp_path / "run"), "--generator", str(tiny_generator_file),
            "--align", "--steps", "1", "--refine-steps", "0", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "note: inverting without LPIPS-VGG16 weights" in result.output  # the CLI's form of the library's notice
    with Image.open(tmp_path / "run" / "input.png") as written:
        assert np.array_equal(np.asarray(written), to_uint8(read_face(photo, 32))[0])
    with np.load(tmp_path / "run" / "latent.npz") as stored:
        assert np.array_equal(stored["w"][0, 0], stored["w"][0, -1])  # --refine-steps 0: the W fit, one w


def _no_network_loads(*args, **kwargs):
    raise AssertionError("a network loaded before the missing 'faces' extra was reported")


def test_cli_align_without_the_faces_extra_is_one_line_naming_it_before_the_generator_loads(tmp_path, monkeypatch,
                                                                                            tiny_generator_file, one_error_line):
    import sys

    from click.testing import CliRunner
    from PIL import Image

    import stylegan2
    from sgsim.cli import main

    monkeypatch.setitem(sys.modules, "dlib", None)  # as if sgsim[faces] were not installed
    monkeypatch.setattr(stylegan2, "load_generator", _no_network_loads)
    Image.new("RGB", (48, 40), (200, 120, 40)).save(tmp_path / "photo.jpg")
    args = ["invert", "--image", str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "run"),
            "--generator", str(tiny_generator_file), "--align", "--steps", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    error = one_error_line(result)
    assert "pip install 'sgsim[faces]'" in error and "--no-align" in error
    assert not (tmp_path / "run").exists()


def test_cpu_inversion_keeps_freed_memory_by_its_largest_activation(monkeypatch, tiny_G, reachable_target):
    from contextlib import nullcontext

    from sgsim import host_memory

    asked = []
    monkeypatch.setattr(host_memory, "freed_memory_kept", lambda size, device: asked.append((size, device.type)) or nullcontext(True))
    with pytest.warns(UserWarning):  # no LPIPS: the pixel loss, with its warning
        invert(tiny_G, reachable_target, steps=1, refine_steps=1)
    last = getattr(tiny_G.synthesis, f"b{tiny_G.img_resolution}")
    assert asked == [(last.out_channels * tiny_G.img_resolution**2 * 4, "cpu")] * 2  # the W fit and the W+ refinement
