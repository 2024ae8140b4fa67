"""Tiny networks in their real file formats for the editing tests: a generator, a CLIP and an SGSIM audio encoder;
and a track of two real sounds with a silent gap for the video tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN_TIMEOUT_S = 300  # a bound on one torchrun run, far above its usual length: reaching it means a hang
COLLECTIVE_TIMEOUT_S = "10"  # SGSIM_DISTRIBUTED_TIMEOUT of the ranks: how long one waits for a rank that hangs
TINY_CLIP = "sgsim-test-tiny-clip"
# The tiny CLIP of docs/reference.md#tiny-clip-for-tests, with embed_dim 512 so it shares the SGSIM encoder's output size.
TINY_CLIP_CONFIG = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session", autouse=True)
def cpu_without_native_bf16() -> Iterator[None]:
    """Edits default to 'bf16' on CPUs with native bfloat16 and to 'fp32' on others; the tests' exact
    expectations (batched == one by one to float rounding) are fp32's, so every CPU runs them as one without.
    tests/sgsim/test_precision.py checks the choice itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        patch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        yield


@pytest.fixture(scope="session")
def tiny_generator_file(tmp_path_factory) -> Path:
    """A 32 px StyleGAN2-ADA generator (8 W+ rows of 32), saved by stylegan2.save_generator.

    Weights come from the networks' own seeded initialisation (unit-variance weights under equalised
    learning rate, affine biases 1): its images respond to w as a trained generator's do, which the
    fan-in-scaled `random_weights` would flatten to a constant image.
    """
    from stylegan2 import save_generator
    from stylegan2.networks import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                      mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    return save_generator(G, tmp_path_factory.mktemp("generator") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_clip_saver(tmp_path_factory) -> Callable[[int], Path]:
    """save(seed) -> path: the tiny CLIP with open_clip's initialisation under `seed`, as a torch.save state dict.

    Its config is registered once as TINY_CLIP (see `tiny_clip_name`); the caller's RNG is left untouched.
    """
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")

    def save(seed: int) -> Path:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(TINY_CLIP, pretrained=None)
        path = folder / f"tiny_clip_seed{seed}.pt"
        torch.save(model.state_dict(), path)
        return path

    return save


@pytest.fixture(scope="session")
def tiny_clip_name() -> str:
    """The open_clip model name the tiny CLIP's config is registered under."""
    return TINY_CLIP


@pytest.fixture(scope="session")
def tiny_clip_file(tiny_clip_saver) -> Path:
    """The tiny CLIP the editing tests use (seed 2)."""
    return tiny_clip_saver(2)


@pytest.fixture(scope="session")
def encoder_checkpoint_file(tmp_path_factory, random_weights) -> Path:
    """An sgsim-resnet18 checkpoint with seeded weights, in the released file's key layout (torch.save)."""
    from encoders.registry import build_audio_encoder

    encoder = build_audio_encoder("sgsim-resnet18")
    path = tmp_path_factory.mktemp("encoder") / "resnet18_random.pth"
    torch.save(random_weights(encoder.state_dict(), 3), path)
    return path


@pytest.fixture(scope="module")
def tiny_clip_space(tiny_clip_file) -> Iterator[Path]:
    """Make the SGSIM encoder's CLIP space the tiny CLIP (for one test module), so the Editor and the CLI pick it by default."""
    from dataclasses import replace

    from encoders.registry import ENCODERS

    with pytest.MonkeyPatch.context() as patch:
        for name in ("sgsim-resnet18", "sgsim-resnet50"):
            patch.setitem(ENCODERS, name, replace(ENCODERS[name], clip_model=TINY_CLIP, clip_weights=str(tiny_clip_file)))
        yield tiny_clip_file


@pytest.fixture(scope="module")
def editor(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space):
    """An Editor on the tiny networks, one per test module so no module sees another's edits."""
    from sgsim.editing import Editor

    return Editor.from_pretrained(str(tiny_generator_file), "sgsim-resnet18", encoder_checkpoint=encoder_checkpoint_file,
                                  device="cpu")


@pytest.fixture(scope="session")
def torchrun(tiny_clip_file, free_port) -> Callable[..., subprocess.CompletedProcess]:
    """torchrun(script, *args, processes=2, **env) -> CompletedProcess: `script` under torchrun on 127.0.0.1 (CPU, gloo),
    importing this checkout, with TINY_CLIP_CONFIG / TINY_CLIP_NAME / TINY_CLIP_WEIGHTS telling it the tiny CLIP."""
    def launch(script: Path, *args: str, processes: int = 2, **env: str) -> subprocess.CompletedProcess:
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                       "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "SGSIM_DISTRIBUTED_TIMEOUT": COLLECTIVE_TIMEOUT_S,
                       "TINY_CLIP_CONFIG": str(tiny_clip_file.parent / f"{TINY_CLIP}.json"), "TINY_CLIP_NAME": TINY_CLIP,
                       "TINY_CLIP_WEIGHTS": str(tiny_clip_file), **env}
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), *args]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)

    return launch


@dataclass(frozen=True)
class GapTrack:
    """A track of two real sounds with digital silence (or a noise floor) between them: raining, gap, wind (mono)."""

    path: Path
    sound_seconds: float
    gap_seconds: float
    rate: int

    @property
    def duration(self) -> float:
        return 2 * self.sound_seconds + self.gap_seconds


@pytest.fixture(scope="session")
def gap_track(shared_data) -> Callable[..., GapTrack]:
    """make(path, gap=3.0) -> GapTrack: 3 s of raining.wav (-24 dBFS), `gap` s of silence (or of white noise at
    `floor_dbfs`, a recording's noise floor), 3 s of wind.wav (-25 dBFS) at 44.1 kHz (video tests)."""
    import numpy as np
    import soundfile

    from sgsim.audio import load_audio

    def make(path: Path, gap: float = 3.0, sound: float = 3.0, rate: int = 44100, floor_dbfs: float | None = None) -> GapTrack:
        parts = [load_audio(shared_data / "audio" / f"{name}.wav", rate, offset=2.0, duration=sound)[0] for name in ("raining", "wind")]
        between = np.zeros(int(gap * rate), np.float32)
        if floor_dbfs is not None:
            between += (10 ** (floor_dbfs / 20) * np.random.default_rng(0).standard_normal(len(between))).astype(np.float32)
        soundfile.write(path, np.concatenate([parts[0], between, parts[1]]), rate)
        return GapTrack(path, sound, gap, rate)

    return make


# `run` adds the tiny networks to the commands that load a generator, and an encoder, the CPU and few steps to those
# that optimise, each only where the test's arguments do not give it.
# apply too: the generator a direction records is loaded only when the user names it
GENERATOR_COMMANDS = ("edit", "batch", "video", "direction", "generate", "invert", "apply")
OPTIMISING_COMMANDS = ("edit", "batch", "video", "direction")


@pytest.fixture(scope="module")
def run(request) -> Callable:
    """Invoke `sgsim ARGS...` in this process and return click's Result (exceptions other than an exit propagate).
    Commands that load a generator get the tiny one (`generator=` another); those that optimise also the tiny
    encoder, --device cpu and --steps (the test module's STEPS, else 2). `networks=False` adds nothing."""
    from click.testing import CliRunner

    from sgsim.cli import main

    steps = str(getattr(request.module, "STEPS", 2))

    def invoke(*args: str, generator=None, networks: bool = True):
        extra: list[str] = []
        if networks and args and args[0] in GENERATOR_COMMANDS:
            request.getfixturevalue("tiny_clip_space")  # the encoder's CLIP space is the tiny CLIP
            if "--generator" not in args:
                extra += ["--generator", str(generator or request.getfixturevalue("tiny_generator_file"))]
            if args[0] in OPTIMISING_COMMANDS:
                extra += ["--encoder-checkpoint", str(request.getfixturevalue("encoder_checkpoint_file"))]
                extra += [part for flag, value in (("--device", "cpu"), ("--steps", steps)) if flag not in args for part in (flag, value)]
        return CliRunner().invoke(main, [*args, *extra], catch_exceptions=False, prog_name="sgsim")

    return invoke


@pytest.fixture(scope="module")
def worlds(tmp_path_factory, tiny_generator_file, random_weights):
    """A folder of worlds holding a toy shapes world: the tiny generator, a seeded world CLIP and a seeded world
    encoder, each in the file format `sgsim world build` writes; a tone per spoken word as audio/<word>.flac and two
    voices of them as the held-out speech (speech/test.csv)."""
    import shutil

    import numpy as np
    import soundfile
    from safetensors.torch import save_file

    from encoders.registry import build_audio_encoder
    from sgsim.worlds import register_world, world_files
    from sgsim.worlds.clip_training import build_clip
    from sgsim.worlds.shapes import WORDS

    root = tmp_path_factory.mktemp("worlds")
    files = world_files(root / "shapes")
    files.root.mkdir()
    shutil.copyfile(tiny_generator_file, files.generator)
    clip = build_clip(0)
    save_file({key: value.detach().contiguous().clone() for key, value in clip.state_dict().items()}, files.clip)
    register_world(files.clip)
    torch.save(random_weights(build_audio_encoder(files.encoder_name).state_dict(), 5), files.encoder)
    rate, rows = 16000, ["path,label,fold"]
    for folder in ("audio", "speech/test"):
        (files.root / folder).mkdir(parents=True)
    for number, word in enumerate(WORDS):
        for voice in (1, 2):  # a tone per word and voice, 1.5 s at half full scale
            tone = 0.5 * np.sin(2 * np.pi * 150.0 * (number + voice) * np.arange(int(1.5 * rate)) / rate)
            soundfile.write(files.root / "speech" / "test" / f"{word}_{voice}.wav", tone, rate)
            rows.append(f"test/{word}_{voice}.wav,{word},{voice}")
        soundfile.write(files.root / "audio" / f"{word}.flac", tone, rate)  # the second voice's
    (files.root / "speech" / "test.csv").write_text("\n".join(rows) + "\n")
    return files
