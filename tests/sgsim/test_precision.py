"""The edit loop's precision option, the published loop of scripts/bench_edit.py, and the benchmark's smoke run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sgsim.editing import Editor, Target
from sgsim.editing.optimise import optimise_latents
from sgsim.editing.precision import (
    EDIT_MARGIN_DB,
    EDIT_MAX_CLIP_LOSS_DIFF,
    RENDER_MIN_PSNR_DB,
    AutocastImageEncoder,
    edit_precision,
    nudge_targets,
)
from sgsim.editing.sources import seed_latent
from sgsim.editing.stopping import AUTO_RULE
from sgsim.errors import SgsimError, SgsimNotice
from stylegan2.precision import SynthesisPrecision

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench_edit.py"
# The fp16 blocks (16 and 32 px) of the tiny 32 px generator, on the CPU, with NVIDIA's clamp.
HALF_ON_CPU = SynthesisPrecision(num_fp16_res=2, conv_clamp=256, fp16_on_cpu=True)
# Measured on the tiny networks (lr 0.1): fp16 vs fp32 edits 39 dB apart after 6 steps, 35 dB after 12,
# 20 dB after 300. The loop itself is chaotic on them (fp32 edits toward targets 1e-7 apart: 125 dB after
# 12 steps, 25 dB after 300; Adam moves low-gradient coordinates by about lr whatever their sign noise), so
# this CPU check runs 6 steps with a margin, and the GPU test below holds full edits to the bound.
# bf16 keeps 8 significant bits to fp16's 11: its renders measured 49 dB from fp32's here, its 6-step edits
# 27-37 dB per target (the test's pair: 29 dB). Whole edits on these 32-channel networks can drift further in
# bf16 (300 steps, four targets: 33, 42, 33 and 13 dB, against 37, 32, 37 and 41 dB for fp32 toward targets moved
# by 1 %; CLIP losses within 0.01), unlike the 256 px network with config-f widths (26 vs 28 dB, within the
# margin), so the whole-edit tolerance is left to the GPU test and to scripts/bench_edit.py --tolerance.
CPU_MIN_PSNR_DB = {"mixed": 30.0, "bf16": 25.0}


@pytest.fixture(scope="module")
def bench():
    """scripts/bench_edit.py as a module."""
    spec = importlib.util.spec_from_file_location("bench_edit", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def rain(shared_data) -> Path:
    return shared_data / "audio" / "raining.wav"


def directions(n: int, dim: int = 512) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(3)), dim=-1)


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")])
def test_cpu_default_follows_the_cpu_and_is_identical_to_asking_for_it(editor, rain, monkeypatch, avx512_bf16, amx, expected):
    # an AVX2-only CPU emulates bf16 (slower than fp32): it gets fp32; native bfloat16 gets bf16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    default = editor.edit(0, Target(rain), steps=3)
    explicit = editor.edit(0, Target(rain), steps=3, precision=expected)
    assert default.settings["precision"] == expected and "native bfloat16" in default.settings["precision_reason"]
    assert explicit.settings["precision_reason"] == "asked for"
    assert torch.equal(default.images, explicit.images)


def test_bf16_on_a_cpu_without_native_bfloat16_warns_that_it_is_slower(editor, rain, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(SgsimNotice, match="slower than 'fp32'"):
        editor.edit(0, Target(rain), steps=1, precision="bf16")


@pytest.mark.parametrize("precision, message", [("mixed", "CUDA"), ("fp16", "unknown precision")])
def test_unusable_precisions_are_refused(editor, rain, precision, message):
    with pytest.raises(SgsimError, match=message):
        editor.edit(0, Target(rain), steps=1, precision=precision)


@pytest.mark.parametrize("fast", ["mixed", "bf16"])
def test_reduced_precision_edit_stays_close_to_fp32_on_the_cpu(editor, fast, psnr):
    """The fast paths' numerics, run on the CPU: mixed (fp16 generator blocks, fp16 autocast CLIP) and bf16."""
    G = editor.generator
    source = seed_latent(G, 0)[None].expand(2, -1, -1)
    results = {}
    for precision in ("fp32", fast):
        with edit_precision(precision, G, editor.clip, synthesis=HALF_ON_CPU) as image_encoder:
            optimised = optimise_latents(G, image_encoder, source, directions(2), steps=6, lr=0.1, weights={"clip": 1.0, "latent": 0.002})
        with torch.no_grad():
            results[precision] = (G.synthesis(optimised.latents), optimised.losses["clip"][-1])
    (half, half_clip), (full, full_clip) = results[fast], results["fp32"]
    with torch.no_grad():
        assert psnr(G.synthesis(source), full) < 20  # the edit moved the image far beyond the tolerance
    assert not torch.equal(half, full)
    assert psnr(half, full) >= CPU_MIN_PSNR_DB[fast]
    assert abs(half_clip - full_clip).max() < 0.01


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_edits_run_modulated_convolutions_unfused(editor, precision):
    """On the CPU the edit loop scales activations instead of running grouped convolutions (faster there)."""
    blocks = [getattr(editor.generator.synthesis, f"b{res}") for res in editor.generator.synthesis.block_resolutions]
    with edit_precision(precision, editor.generator, editor.clip):
        assert all(block.fused_modconv is False for block in blocks)
    assert all(block.fused_modconv is None for block in blocks)


def test_bf16_clip_sees_one_image_at_a_time_on_the_cpu_and_stays_near_fp32(editor):
    """bf16 CLIP on the CPU encodes image by image (contiguous activations); each embedding stays within cosine
    0.999 of fp32's, and one at a time gives what the batch gives."""
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    full = editor.clip.encode_image(images)
    with edit_precision("bf16", editor.generator, editor.clip) as encoder:
        assert encoder.per_sample and encoder.dtype == torch.bfloat16
        low = encoder.encode_image(images)
    assert low.dtype == torch.float32 and low.shape == full.shape
    assert (F.cosine_similarity(low, full) > 0.999).all()
    torch.testing.assert_close(AutocastImageEncoder(editor.clip, None, per_sample=True).encode_image(images), full, atol=1e-5, rtol=0)


def test_bf16_cpu_edits_run_the_generator_in_bf16_and_cast_frozen_weights_once(editor):
    """A bf16 CPU edit: the generator's blocks above 4 px compute in bf16 themselves; CLIP's image tower and the
    loss terms' networks hold bf16 weights for the whole edit (not recast at every call), which encode exactly as
    autocast's own casts do; weights that need a gradient are left alone, and every fp32 weight comes back."""
    from sgsim.identity import ArcFace, IdentityLoss, IrSeConfig

    torch.manual_seed(6)
    frozen = IdentityLoss(ArcFace(IrSeConfig(stem_channels=8, stages=((8, 1), (16, 1)), se_reduction=4, embedding_dim=32)).eval().requires_grad_(False))
    trained = torch.nn.Linear(4, 4)  # requires grad: autocast caches its cast itself
    G, visual = editor.generator, editor.clip.model.visual
    before = {name: p.detach().clone() for name, p in [*visual.named_parameters(), *frozen.named_parameters()]}
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.autocast("cpu", torch.bfloat16):
        autocast_cast = AutocastImageEncoder(editor.clip, torch.bfloat16, per_sample=True).encode_image(images)
    top = G.synthesis.block_resolutions[-1]
    with edit_precision("bf16", G, editor.clip, helpers=[frozen, trained, "not a network"]) as encoder:
        assert getattr(G.synthesis, f"b{top}").reduced_dtype == torch.bfloat16
        assert visual.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.bfloat16
        assert frozen.net.output_layer[3].weight.dtype == torch.bfloat16 and trained.weight.dtype == torch.float32
        assert visual.class_embedding.dtype == torch.float32  # not a layer's weight: untouched
        assert torch.equal(encoder.encode_image(images), autocast_cast)
        with torch.no_grad():
            assert G.synthesis(seed_latent(G, 0)[None], noise_mode="const").isfinite().all()
    after = dict([*visual.named_parameters(), *frozen.named_parameters()])
    assert all(after[name].dtype == torch.float32 and torch.equal(after[name], value) for name, value in before.items())
    assert getattr(G.synthesis, f"b{top}").reduced_dtype == torch.float16


def test_bf16_renders_match_fp32_and_edits_return_fp32_renders(editor, rain, psnr):
    G = editor.generator
    ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(7)), None, truncation_psi=0.7)
    with torch.no_grad():
        with edit_precision("fp32", G, editor.clip):
            full = G.synthesis(ws, noise_mode="const")
        with edit_precision("bf16", G, editor.clip):
            half = G.synthesis(ws, noise_mode="const")
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert RENDER_MIN_PSNR_DB <= psnr(half, full) < 80  # reduced, but within the tolerance
    result = editor.edit(0, Target(rain), steps=3, precision="bf16")
    assert result.settings["precision"] == "bf16" and result.images.dtype == torch.float32
    assert torch.equal(result.images[0, 0], editor.render(result.latents[0, :1])[0])


def test_nudged_targets_move_by_the_documented_size_and_stay_unit():
    targets = directions(3)
    nudged = nudge_targets(targets, seed=8)
    torch.testing.assert_close(nudged.norm(dim=-1), torch.ones(3))
    moved = (nudged - targets).norm(dim=-1)
    assert ((moved > 0.0099) & (moved < 0.0101)).all()  # a tangent-ish step of 1 %, shortened a little by renormalising
    assert torch.equal(nudge_targets(targets, seed=8), nudged) and not torch.equal(nudge_targets(targets, seed=9), nudged)


def test_published_loop_and_sgsim_share_the_loss_and_optimiser(editor, bench):
    """Given sgsim's CLIP preprocessing and no identity term, the re-created published loop is sgsim's loop."""
    G = editor.generator
    source = seed_latent(G, 0)[None]
    target = directions(1)
    published, totals = bench.published_edit(G, editor.clip.encode_image, None, source, target, steps=5, lambda_latent=0.008)
    ours = optimise_latents(G, editor.clip, source, target, steps=5, lr=bench.LR, weights={"clip": 1.0, "latent": 0.008})
    assert totals == pytest.approx(ours.losses["total"][:, 0].tolist(), abs=1e-5)
    moved = (ours.latents - source).abs().mean()
    assert (published - ours.latents).abs().mean() < 1e-3 * moved


def test_published_clip_input_is_a_box_filter_to_clip_size(bench):
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    resized = bench.published_clip_input(256, 224)(images)  # nearest x7 = 1792 px, average over 8 x 8
    assert resized.shape == (2, 3, 224, 224)
    torch.testing.assert_close(resized.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    same = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(bench.published_clip_input(32, 32)(same), same, atol=1e-5, rtol=0)


def test_bench_quick_smoke_run(shared_data):
    """The benchmark runs end to end and prints its four rows and four ratios; how fast is its own business."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parents[1]), os.environ.get("PYTHONPATH")]))}  # this checkout's sgsim
    run = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--quick", "--threads", "1", "--audio", str(shared_data / "audio")],
                         capture_output=True, text=True, env=env, timeout=600)  # a guard against a hang, not a speed check
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "smoke run" in lines[0]
    rows = [line for line in lines if line.startswith("(")]
    assert [row[:4] for row in rows] == ["(a) ", "(a')", "(b) ", "(c) "]  # (a'): (a) with the heap kept as sgsim keeps it
    assert all(float(row.split()[-7]) > 0 for row in rows)  # steps/s
    assert [line.split(":")[0] for line in lines[-4:]] == ["b/a", "c/a", "b/a'", "c/a'"]


def test_bench_tolerance_smoke_run(shared_data):
    """--tolerance prints the renders' distance and the three whole edits, and judges them by the documented rule."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parents[1]), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--quick", "--threads", "1", "--tolerance", "--precision",
                          "bf16", "--audio", str(shared_data / "audio")], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("renders, bf16 vs fp32: ") and float(lines[0].split()[4]) >= RENDER_MIN_PSNR_DB
    assert [line.split()[0] for line in lines[1:4]] == ["bf16", "fp32", "fp32,"]
    assert lines[4].startswith("edits, bf16 vs fp32: ") and lines[4].endswith("the tolerance")


def test_bench_auto_steps_smoke_run(shared_data):
    """--auto-steps prints the fixed run, auto by AUTO_RULE and each asked-for cooldown's and minimum's own run against
    it, each judged by the working resolution's bounds, then the table of other rules."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parents[1]), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--quick", "--threads", "1", "--auto-steps", "--steps", "160",
                          "--cooldowns", "5", "--min-steps", "155", "--seed", "3", "--audio", str(shared_data / "audio")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    verdicts = [line for line in run.stdout.splitlines() if " / fixed 160: " in line]
    assert [line.split(" / ")[0] for line in verdicts] == ["auto (AUTO_RULE)", "auto with a 5-step cooldown", "auto flattening from step 155"]
    for line in verdicts:
        steps = int(line.split(" / fixed 160: ")[1].split()[0])
        assert AUTO_RULE.min_steps <= steps <= 160 and (": kept;" in line or ": NOT kept;" in line)
    assert "other rules without a cooldown" in run.stdout


@pytest.fixture(scope="module")
def gpu_editor(encoder_checkpoint_file, tiny_clip_space) -> Editor:
    """A 256 px generator with FFHQ config-f widths (seeded initialisation) on CUDA, the tiny CLIP, sgsim-resnet18."""
    from sgsim.components import load_audio_encoder, load_clip_for
    from stylegan2 import Generator

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        G = Generator(512, 0, 512, 256, 3, mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
    encoder = load_audio_encoder("sgsim-resnet18", encoder_checkpoint_file, device="cuda").component
    return Editor(G, encoder, load_clip_for(encoder, device="cuda").component, device="cuda")


@pytest.mark.parametrize("fast", ["mixed", "bf16"])
def test_reduced_precision_renders_match_fp32_on_a_gpu(gpu_editor, fast, psnr):
    """The fp16 / bf16 kernels themselves: the same latents rendered by the fast generator and the fp32 one."""
    G = gpu_editor.generator
    ws = G.mapping(torch.randn(4, 512, generator=torch.Generator().manual_seed(7)).cuda(), None, truncation_psi=0.7)
    with torch.no_grad():
        with edit_precision("fp32", G, gpu_editor.clip):
            full = G.synthesis(ws)
        with edit_precision(fast, G, gpu_editor.clip):
            half = G.synthesis(ws)
    assert psnr(half, full) >= RENDER_MIN_PSNR_DB


@pytest.mark.parametrize("fast", ["mixed", "bf16"])
def test_reduced_precision_edits_match_fp32_on_a_gpu(gpu_editor, rain, fast, psnr):
    """Issue #6: a full 300-step edit at reduced precision is the fp32 edit of the same inputs, within the
    documented tolerance (sgsim/editing/precision.py): 35 dB PSNR, or as close as an fp32 edit toward targets
    moved by 1 % stays to the fp32 edit, less a margin; and the same final CLIP loss.

    Not yet run on a GPU (none was lent). On the CPU at 256 px (config-f widths, ViT-B/32, random weights)
    the fp32 edit moves 28 dB when its target moves by 1 %, and the bf16 edit is 29 dB from the fp32 one. This
    test's body run on the CPU with a 128 px generator (bf16): 18.4 dB against a 17.2 dB floor, but a final CLIP
    loss 0.0145 from fp32's on the fire target, over the 0.01 bound.
    """
    from sgsim.editing.targets import embed_target

    targets = [Target(rain), Target(rain.with_name("fire.wav"))]
    full = gpu_editor.edit(0, targets, steps=300, precision="fp32")
    half = gpu_editor.edit(0, targets, steps=300, precision=fast)
    assert half.settings["precision"] == fast
    assert psnr(full.source_image, full.images[0, 0]) < 20  # the edit changed the image far beyond the tolerance
    G = gpu_editor.generator
    aims = torch.stack([embed_target(t, gpu_editor.audio_encoder, gpu_editor.clip).mixed(1.0) for t in targets]).cuda()
    source = full.source_latent.cuda()[None].expand(len(targets), -1, -1)
    with edit_precision("fp32", G, gpu_editor.clip) as clip:
        nudged = optimise_latents(G, clip, source, nudge_targets(aims, seed=8), steps=300, lr=0.1,
                                  weights={"clip": 1.0, "latent": gpu_editor.preset.lambda_latent})
    floor = psnr(gpu_editor.render(nudged.latents), full.images[:, 0])
    achieved = psnr(half.images, full.images)
    assert achieved >= min(RENDER_MIN_PSNR_DB, floor - EDIT_MARGIN_DB), f"{fast} vs fp32: {achieved:.1f} dB; fp32 nudged: {floor:.1f} dB"
    assert abs(half.losses["clip"][-1] - full.losses["clip"][-1]).max() < EDIT_MAX_CLIP_LOSS_DIFF


def test_the_source_identity_is_embedded_once_per_edit(editor):
    """Work that does not change between steps is done once: the source image's ArcFace embedding."""
    from sgsim.identity import ArcFace, IdentityLoss, IrSeConfig

    torch.manual_seed(6)
    net = ArcFace(IrSeConfig(stem_channels=8, stages=((8, 1), (16, 1)), se_reduction=4, embedding_dim=32)).eval()
    calls = []
    embed = net.embed
    net.embed = lambda images: calls.append(images.requires_grad) or embed(images)
    G = editor.generator
    source = seed_latent(G, 0)[None]
    optimised = optimise_latents(G, editor.clip, source, directions(1), steps=4, lr=0.1,
                                 weights={"clip": 1.0, "latent": 0.002, "id": 0.5}, networks={"identity": IdentityLoss(net)})
    assert calls == [False] + [True] * 4  # the source once, without gradient; then the edited image every step
    assert optimised.losses["id"][0, 0] == pytest.approx(0, abs=1e-6) and optimised.losses["id"][-1, 0] > 0


def test_cli_precision_flag(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space, rain, tmp_path):
    """sgsim edit --precision: every precision is offered, fp32 and bf16 are recorded in run.json, mixed on the CPU
    is a one-line error, not a traceback."""
    import json

    from click.testing import CliRunner

    from sgsim.cli import main
    from sgsim.devices import PRECISIONS

    option = next(p for p in main.commands["edit"].params if p.name == "precision")
    assert tuple(option.type.choices) == PRECISIONS

    def edit(precision: str, out: Path):
        return CliRunner().invoke(main, ["edit", "--audio", str(rain), "--seed", "1", "--out", str(out), "--steps", "2",
                                         "--generator", str(tiny_generator_file), "--encoder-checkpoint", str(encoder_checkpoint_file),
                                         "--device", "cpu", "--precision", precision])

    for precision in ("fp32", "bf16"):
        done = edit(precision, tmp_path / precision)
        assert done.exit_code == 0, done.output
        assert json.loads((tmp_path / precision / "run.json").read_text())["settings"]["precision"] == precision
    refused = edit("mixed", tmp_path / "mixed")
    assert refused.exit_code != 0 and "precision='mixed'" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "mixed").exists()
