"""Broken input on the command line (docs/hardening.md, section Command line): each case is one line on stderr,
no traceback, a non-zero exit, no partial or stale output, and a valid run after it still works."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner

from sgsim.cli import main

STEPS = "2"


@pytest.fixture(scope="module")
def cli(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space):
    """invoke(command, *args): the CLI on the tiny networks, stderr kept apart from stdout."""
    def invoke(command: str, *args: str, networks: bool = True):
        extra = ["--generator", str(tiny_generator_file)] if networks else []
        if command == "edit" and networks:
            extra += ["--encoder-checkpoint", str(encoder_checkpoint_file)]
        return CliRunner().invoke(main, [command, *args, *extra], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def rain(shared_data):
    return shared_data / "audio" / "raining.wav"


def one_error_line(result) -> str:
    """The single 'Error: ...' line a failed run printed on stderr (and nothing else there, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("edit:")]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def _valid(command: str, rain, out) -> list[str]:
    return {"edit": ["--audio", str(rain), "--seed", "1", "--steps", STEPS, "--device", "cpu", "--out", str(out)],
            "generate": ["--seed", "1", "--device", "cpu", "--out", str(out)],
            "invert": ["--image", str(out.parent / "photo.png"), "--steps", STEPS, "--device", "cpu", "--out", str(out)]}[command]


def _broken_inputs(tmp_path):
    """Build every broken file the cases below name."""
    soundfile.write(tmp_path / "one.wav", np.array([0.5], np.float32), 16000)
    soundfile.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "garbage.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)
    os.mkfifo(tmp_path / "fifo.wav")
    np.savez(tmp_path / "nan.npz", w=np.full((8, 32), np.nan, np.float32))
    np.savez(tmp_path / "text_noise.npz", w=np.zeros((8, 32), np.float32), **{"noise.b4.conv1.noise_const": np.array(["x"] * 16)})
    np.savez(tmp_path / "complex.npz", w=np.zeros((8, 32), np.complex64))
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 100, 50)).save(tmp_path / "photo.png")


# (case id, command, arguments with {tmp} for the case's folder, expected text of the error line)
CASES = [
    ("device cuda without a GPU", "edit", ["--device", "cuda"], "no usable CUDA GPU; use --device cpu"),
    ("device cuda:99", "edit", ["--device", "cuda:99"], "--device cuda:99"),
    ("device mps", "edit", ["--device", "mps"], "--device mps"),
    ("device foo", "edit", ["--device", "foo"], "'foo' is not a device name"),
    ("generate device foo", "generate", ["--device", "foo"], "'foo' is not a device name"),
    ("invert device cuda:99", "invert", ["--device", "cuda:99"], "--device cuda:99"),
    ("steps 1e11", "edit", ["--steps", "100000000000"], "is not a whole number from 1 to 100000, nor auto"),
    ("steps written 1e11", "edit", ["--steps", "1e11"], "'1e11' is not a whole number from 1 to 100000, nor auto"),
    ("invert seed 1e20", "invert", ["--seed", "100000000000000000000"], "is not in the range 0<=x<=4294967295"),
    ("one-sample sound", "edit", ["--audio", "{tmp}/one.wav"], "one.wav is 0.1 ms long"),
    ("silent sound", "edit", ["--audio", "{tmp}/silent.wav"], "silent.wav: the sound is silent"),
    ("garbage sound", "edit", ["--audio", "{tmp}/garbage.mp3"], "garbage.mp3 cannot be read as audio by libsndfile or a system decoder"),
    ("fifo sound", "edit", ["--audio", "{tmp}/fifo.wav"], "fifo.wav is not a regular file"),
    ("NaN latent", "edit", ["--latent", "{tmp}/nan.npz"], "nan.npz:w contains NaN or infinite values (or values beyond float32); the file is damaged"),
    ("latent with text noise", "edit", ["--latent", "{tmp}/text_noise.npz"], "noise buffer b4.conv1.noise_const holds <U1 values, not real numbers"),
    ("complex latent", "edit", ["--latent", "{tmp}/complex.npz"], "complex.npz:w holds complex64 values, not real numbers"),
    ("edit strength 1e300", "edit", ["--strength", "1e300"], "strengths must be one or more numbers from -100 to 100"),
    ("mixed precision on the CPU", "edit", ["--precision", "mixed"], "precision='mixed' runs fp16 kernels on CUDA"),
    ("class on an unconditional generator", "edit", ["--class", "2"], "this generator is unconditional"),
    ("class with a latent source", "edit", ["--class", "2", "--latent", "{tmp}/nan.npz"], "--class picks the label of a --seed source"),
    ("missing image", "edit", ["--image", "{tmp}/nope.png"], "image file not found"),
    ("invert missing image", "invert", ["--image", "{tmp}/nope.png"], "image file not found"),
    ("unknown preset", "edit", ["--preset", "faces"], "unknown preset 'faces'"),
    ("out is a file", "edit", ["--out", "{tmp}/one.wav"], "one.wav is a file"),
    ("out under /sys", "edit", ["--out", "/sys/sgsim-out"], "cannot write the output folder /sys/sgsim-out"),
    ("generate backwards range", "generate", ["--seeds", "3-1"], "the range 3-1 runs backwards"),
]


@pytest.mark.parametrize("case, command, args, expected", CASES, ids=[c[0] for c in CASES])
def test_broken_input_is_one_line_writes_nothing_and_a_valid_run_still_works(cli, rain, tmp_path, capfd, case, command, args, expected):
    if case == "out under /sys" and not os.path.isdir("/sys/kernel"):
        pytest.skip("no sysfs")
    _broken_inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    valid = _valid(command, rain, out)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # The case's flags override the valid run's (click keeps the last value of a repeated option).
    source_flags = {"--latent", "--image"} & set(args)
    if source_flags and command == "edit":
        valid = valid[:2] + valid[4:]  # drop --seed 1: one source only
    if "--audio" in args and command == "edit":
        valid = valid[2:]
    result = cli(command, *valid, *args)
    assert expected in one_error_line(result)
    assert "libmpg123" not in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no staging left
    result = cli(command, *_valid(command, rain, out))
    assert result.exit_code == 0, result.stderr
    assert (out / "run.json").is_file()


def test_a_foreign_folder_is_refused_and_overwrite_replaces_it_whole(cli, rain, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "run.json").write_text('{"experiment": "not sgsim"}')
    (out / "source.png").write_bytes(b"my photo")
    result = cli("edit", *_valid("edit", rain, out))
    assert "mine is not empty and holds files sgsim did not write; pass another --out, or --overwrite" in one_error_line(result)
    assert (out / "source.png").read_bytes() == b"my photo" and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert cli("edit", *_valid("edit", rain, out), "--overwrite").exit_code == 0
    assert json.loads((out / "run.json").read_text())["command"] == "edit"


def test_an_interrupted_rerun_leaves_the_earlier_run_whole(cli, rain, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert cli("edit", *_valid("edit", rain, out)).exit_code == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the second run writes its files

    monkeypatch.setattr("sgsim.editing.folder.write_mp4", interrupted)
    result = cli("edit", "--audio", str(rain), "--seed", "2", "--steps", STEPS, "--device", "cpu", "--out", str(out), "--save-video")
    assert result.exit_code != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_staging_of_a_killed_run_is_cleaned_by_the_next(cli, rain, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f".run.partial-{dead.stdout.strip()}-x1y2"
    stale.mkdir()
    (stale / "source.png").write_bytes(b"half")
    assert cli("edit", *_valid("edit", rain, tmp_path / "run")).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_bad_device_fails_before_any_network_loads(tmp_path, rain, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a network was loaded")

    monkeypatch.setattr("stylegan2.load_generator", no_loading)
    result = CliRunner().invoke(main, ["edit", "--audio", str(rain), "--seed", "1", "--device", "cuda",
                                                       "--out", str(tmp_path / "o")])
    assert "no usable CUDA GPU" in one_error_line(result)


def test_sigterm_while_writing_leaves_no_staging(tmp_path):
    """A command terminated mid-run unwinds: its staging folder goes, the exit is 143, and one line says so."""
    script = f"""
import sys, time, click
from pathlib import Path
from sgsim import cli
from sgsim.atomic import staged_output_dir

@click.command("slow")
def slow():
    with staged_output_dir(Path({str(tmp_path / 'out')!r})) as staging:
        (staging / "half.png").write_bytes(b"half")
        print("writing", flush=True)
        time.sleep(60)

cli.COMMANDS["slow"] = ("__main__", "slow", "A command that is killed while it writes.")
cli.main(["slow"])
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert any(p.name.startswith(".out.partial-") for p in tmp_path.iterdir())
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert [line for line in stderr.splitlines() if line.strip()] == ["Error: terminated (SIGTERM); nothing was written"]
    assert list(tmp_path.iterdir()) == []
