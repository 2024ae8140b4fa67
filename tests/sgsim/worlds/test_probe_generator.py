"""scripts/probe_generator.py: the world's generator stage with settings changed, judged as the build judges it. Its
unchanged run is the build's own stage (same reals, latents and initialisation), and bad settings are one clear line."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "probe_generator.py"


@pytest.fixture(scope="module")
def probe_module():
    spec = importlib.util.spec_from_file_location("probe_generator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unchanged_probe_is_the_builds_generator_stage(probe_module, tmp_path):
    from sgsim.worlds.build import SCALES, WorldBuild

    measured = WorldBuild(tmp_path, seed=0, scale="toy").build_generator()["judge"]
    images = SCALES["toy"].metric_images
    rows = probe_module.probe({}, every=1, images=images, scale="toy", report=lambda line: None)
    assert [row["step"] for row in rows] == [1, 2]
    assert rows[-1]["clean"] == measured["clean"]
    assert rows[-1]["combinations_present"] == measured["combinations_present"]
    assert sum(rows[-1]["clean_shapes"].values()) == sum(measured["counts"].values())


def test_changes_reach_the_trainer_and_the_reals(probe_module, monkeypatch):
    from sgsim.worlds import gan_training
    from sgsim.worlds.build import generator_reals
    from sgsim.worlds.shapes import RANGES, judge

    seen = {}
    original = gan_training.GanTrainer.__init__

    def recording(self, config, real_images, *args, **kwargs):
        seen["config"], seen["reals"] = config, real_images(64, 0)
        original(self, config, real_images, *args, **kwargs)

    monkeypatch.setattr(gan_training.GanTrainer, "__init__", recording)
    probe_module.probe({"steps": 1, "r1_gamma": 7.0}, every=1, images=8, scale="toy",
                       ranges=dataclasses.replace(RANGES, radius=(8.0, 8.0)), report=lambda line: None)
    assert (seen["config"].steps, seen["config"].r1_gamma, seen["config"].batch_size) == (1, 7.0, 8)
    # The same draws at an equal-area radius of 4.5 px: areas (8 / 4.5)^2 = 3.16 times smaller, a little less for the
    # antialiased rim the judge counts (a band along the outline, so proportional to the radius, not its square).
    small = generator_reals(0, dataclasses.replace(RANGES, radius=(4.5, 4.5)))(64, 0)
    assert 2.8 < judge(seen["reals"]).area.mean() / judge(small).area.mean() < 3.3


def test_settings_parse_to_their_fields_types(probe_module):
    assert probe_module.parse_settings(["r1_gamma=2", "steps=300"]) == {"r1_gamma": 2.0, "steps": 300}


@pytest.mark.parametrize("arguments, message", [
    (["--set", "nonsense=1"], "expected FIELD=VALUE with FIELD one of steps"),
    (["--set", "steps=many"], "steps takes a int"),
    (["--radius", "9,4"], "expected LOW,HIGH"),
    (["--radius", "6,12"], "does not fit the 32 px picture; the largest that does is 9.65"),
    (["--device", "gpu"], "'gpu' is not a device name; use cpu, cuda or cuda:N"),
])
def test_bad_settings_are_one_clear_line(arguments, message):
    run = subprocess.run([sys.executable, str(SCRIPT), "--scale", "toy", *arguments], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
