"""benchmarks/quality_vs_nfe.py: the band of its knee rule comes from a measured seed spread, and its tables agree.

The band (chapter 4 reads it): a FID is "as good as the reference" when it is at most the mean of the reference's
FIDs over several seeds plus K = 2 of their standard deviations. These tests recompute the band from the per-seed
FIDs the committed table records, with the standard library, and check every row's `within_band` against it; a
quick run of the script checks that it writes both tables by the same rule.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def check_band(spread: list[dict[str, str]], rows: list[dict[str, str]], *, min_seeds: int) -> float:
    """Recompute the band from the per-seed FIDs and check both tables against it; return the threshold."""
    assert [int(r["seed"]) for r in spread] == list(range(len(spread))) and len(spread) >= min_seeds, (
        f"the spread table should hold seeds 0..n-1 with n >= {min_seeds}, got {[r['seed'] for r in spread]}"
    )
    fids = [float(r["fid"]) for r in spread]
    mean, sd = statistics.fmean(fids), statistics.stdev(fids)
    k = float(spread[0]["k"])
    assert k == 2.0, f"the band should be 2 standard deviations wide, the table says k = {k}"
    for r in spread:
        assert float(r["fid_mean"]) == pytest.approx(mean, abs=2e-3), f"fid_mean {r['fid_mean']}, expected {mean:.4f}"
        assert float(r["fid_sd"]) == pytest.approx(sd, abs=2e-3), f"fid_sd {r['fid_sd']}, expected {sd:.4f}"
        assert float(r["band"]) == pytest.approx(k * sd / mean, abs=2e-4), (
            f"band {r['band']}, expected k sd / mean = {k * sd / mean:.4f}"
        )
        assert float(r["threshold"]) == pytest.approx(mean + k * sd, abs=2e-3), (
            f"threshold {r['threshold']}, expected mean + k sd = {mean + k * sd:.4f}"
        )
    threshold = mean + k * sd
    for r in rows:
        assert float(r["reference_fid"]) == pytest.approx(mean, abs=2e-3), (
            f"{r['sampler']} at {r['nfe']} NFE: reference_fid {r['reference_fid']}, expected the seed mean {mean:.3f}"
        )
        expected = float(r["fid"]) <= threshold
        assert r["within_band"] == str(expected), (
            f"{r['sampler']} at {r['nfe']} NFE: FID {r['fid']} against the band's {threshold:.3f}, within_band "
            f"should be {expected}, the table says {r['within_band']}"
        )
    return threshold


def test_the_committed_band_is_derived_from_the_committed_seed_spread():
    spread, rows = read(RESULTS / "quality_vs_nfe_spread.csv"), read(RESULTS / "quality_vs_nfe.csv")
    assert all(r["reference"] == "ddpm, 1000 steps" for r in spread), "the committed reference is DDPM, 1000 steps"
    check_band(spread, rows, min_seeds=3)
    # A knee rule needs the band to be positive and less than the FID itself.
    assert 0 < float(spread[0]["band"]) < 1, f"band {spread[0]['band']} is not a fraction of the reference FID"


@pytest.mark.slow
def test_a_quick_run_writes_the_spread_and_marks_rows_by_the_band(tmp_path):
    out = tmp_path / "quality.csv"
    command = [sys.executable, str(ROOT / "benchmarks" / "quality_vs_nfe.py"), "--per-class", "2", "--seeds", "3"]
    command += ["--reference-steps", "20", "--nfe", "2", "6", "--samplers", "euler", "heun", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    spread, rows = read(tmp_path / "quality_spread.csv"), read(out)
    assert all(r["reference"] == "ddpm, 20 steps" for r in spread)
    assert [(r["sampler"], r["nfe"], r["steps"]) for r in rows] == [
        ("euler", "2", "2"),
        ("euler", "6", "6"),
        ("heun", "2", "1"),
        ("heun", "6", "3"),
    ]
    check_band(spread, rows, min_seeds=3)
    assert "knee (NFE)" in done.stdout and "band: FID <= mean + 2 sd" in done.stdout, done.stdout[-2000:]
