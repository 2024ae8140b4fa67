"""scripts/bench_evaluate.py's smoke run: it writes edit folders through sgsim's own path, measures them both ways and
finds the same rows; how fast is its own business."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "scripts" / "bench_evaluate.py"


def test_bench_quick_smoke_run():
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parents[1]), os.environ.get("PYTHONPATH")]))}  # this checkout's sgsim
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--threads", "1", "--repeats", "1"],
                         capture_output=True, text=True, env=env, timeout=600)  # a guard against a hang, not a speed check
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("smoke run, world full: 4 images in 1 folders")
    assert [line[:4] for line in lines[1:3]] == ["(a) ", "(b) "]
    assert all(float(line.split(":")[1].split()[0]) > 0 for line in lines[1:3])  # images/s
    assert lines[3].startswith("rows agree: ")
    assert lines[4].startswith("b/a: ")
