"""The GPU check's dry run (GPU_CHECK_DRY=1 scripts/gpu_check.sh): every step on the CPU, so the script cannot rot.

On a GPU machine the same script runs the gpu tests, trains on CUDA, times our SD loop against pipe(...) and
grades Project B with make autograde-gpu (scripts/gpu_check.py); here each step runs with tiny settings and the
summary must have its shape: one row per step, in order, and what comes back from the device machine's $OUT
(at most 8 files, plain names) must hold.
"""

from __future__ import annotations

import csv
import re
import subprocess

import pytest
from support import ROOT, course_env, requires_sandbox

pytestmark = [pytest.mark.slow, requires_sandbox()]

STEPS = ["install", "gpu_tests", "training", "sd_latency", "autograde"]


def test_the_dry_run_exercises_every_step_and_writes_its_summary(tmp_path):
    out = tmp_path / "gpu-check"
    env = {**course_env(), "GPU_CHECK_DRY": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, f"dry run failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == STEPS, rows
    assert all(r["status"] in ("ok", "skip") for r in rows), rows
    assert all(r["status"] == "ok" for r in rows if r["step"] != "install"), rows  # only the wheelhouse may be absent
    by_step = {r["step"]: r["result"] for r in rows}
    assert re.fullmatch(r"0 passed, 0 failed, [1-9]\d* skipped", by_step["gpu_tests"]), by_step  # CPU: all skip
    assert by_step["training"].startswith("3 steps on cpu: "), by_step
    assert "worst ours/pipe" in by_step["sd_latency"], by_step
    correct, maximum, wrong = map(float, re.search(r"correct (\S+)/(\S+), wrong (\S+)/", by_step["autograde"]).groups())
    assert correct == maximum > wrong >= 0, by_step["autograde"]
    table = (out / "summary.md").read_text().splitlines()
    assert table[2:4] == ["| step | status | seconds | result |", "|---|---|---|---|"], table
    assert [line.split("|")[1].strip() for line in table[4:]] == STEPS, table
    # What the device tool brings back from $OUT: at most 8 files, plain names, no deeper than two folders.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files), files
    assert {p.name for p in files} >= {"summary.md", "summary.csv", "gpu_check.log", "gpu_tests.xml"}, files
