"""What running the course costs: building the book cold and warm, the test suite, autograding a submission.

Each operation runs as an instructor or CI would run it, in a subprocess, timed by the wall clock:

  book cold   jupyter-book build . into an empty folder: every chapter executed, no cache
  book warm   the same build again: the execution cache is warm, pages are re-rendered only if changed
  suite       python -m pytest (the whole suite, as `make test` and CI run it)
  autograde   per assignment: a temporary course with the release generated from solutions/, one
              correct submission per student (the release with the solutions filled in), then
              `nbgrader autograde <assignment>` through the grading kernel, as `make autograde` does;
              seconds per submission = the run's time / students. Full settings (QUICK unset), so a
              project costs what it costs in a real class.

The targets (issue 12): a warm `make book` under 2 minutes; autograding any non-GPU assignment under 60 s
per submission. Run on the machine you grade on; CI's runners have 2 cores.

    python benchmarks/course_operations.py                         # everything (about 40 min on 2 cores)
    python benchmarks/course_operations.py --only book autograde --assignments 01_forward_process
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from _results import RESULTS, ROOT, write_csv  # benchmarks/_results.py, next to this script

from diffusion_internals.course.grading.solutions import solved_release

OPERATIONS = ("book", "suite", "autograde")
BIN = Path(sys.executable).parent
NBGRADER = [sys.executable, "-m", "nbgrader"]
TARGETS = {"book warm": 120.0, "autograde": 60.0}  # seconds (per submission for autograde)


def env() -> dict[str, str]:
    """The course's bin first, an offline hub, full settings (QUICK unset)."""
    e = {k: v for k, v in os.environ.items() if k != "DIFFUSION_INTERNALS_QUICK"}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("HF_HUB_OFFLINE", "1")
    return e


def timed(cmd: list[str], cwd: Path) -> float:
    """Seconds the command took; a failing command stops the benchmark with its output's tail."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds


def book(rows: list[dict]) -> None:
    with tempfile.TemporaryDirectory(prefix="book-bench-") as out:
        cmd = [str(BIN / "jupyter-book"), "build", ".", "--path-output", out]
        for kind in ("cold", "warm"):
            seconds = timed(cmd, ROOT)
            rows.append({"operation": f"book {kind}", "item": "all pages", "seconds": seconds})
            print(f"book {kind}: {seconds:.0f} s", flush=True)


def suite(rows: list[dict]) -> None:
    seconds = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], ROOT)
    rows.append({"operation": "suite", "item": "python -m pytest", "seconds": seconds})
    print(f"suite: {seconds:.0f} s", flush=True)


def autograde(rows: list[dict], assignments: list[str], students: int) -> None:
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        course = Path(tmp)
        shutil.copy2(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions", course / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        for assignment in assignments:
            timed([*NBGRADER, "generate_assignment", assignment, "--force"], course)
            for k in range(students):
                for release in sorted((course / "exercises" / assignment).glob("*.ipynb")):
                    target = course / "submitted" / f"student{k}" / assignment / release.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    nbformat.write(solved_release(release, course / "solutions" / assignment / release.name), target)
            seconds = timed([*NBGRADER, "autograde", assignment, "--force"], course)
            rows.append({"operation": "autograde", "item": assignment, "seconds": seconds / students})
            print(
                f"autograde {assignment}: {seconds / students:.0f} s per submission ({students} submissions)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=OPERATIONS, default=list(OPERATIONS))
    parser.add_argument("--assignments", nargs="*", default=None, help="default: every folder of solutions/")
    parser.add_argument("--students", type=int, default=1, help="submissions per assignment (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "course_operations.csv")
    args = parser.parse_args()
    known = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    assignments = known if args.assignments is None else args.assignments
    unknown = sorted(set(assignments) - set(known))
    if unknown or args.students < 1:
        parser.error(f"--assignments must be among {known} (got {unknown}); --students must be >= 1")

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    rows: list[dict] = []
    start = time.perf_counter()
    if "book" in args.only:
        book(rows)
    if "suite" in args.only:
        suite(rows)
    if "autograde" in args.only:
        autograde(rows, assignments, args.students)
    for row in rows:
        target = TARGETS.get(row["operation"])
        row["target_s"] = "" if target is None else target
        row["met"] = "" if target is None else ("yes" if row["seconds"] <= target else "no")
        row["seconds"] = round(row["seconds"], 1)
        row["cores"] = os.cpu_count()
    print(f"\n{'operation':>10} {'item':>24} {'seconds':>9} {'target':>7} {'met':>4}")
    for row in rows:
        print(f"{row['operation']:>10} {row['item']:>24} {row['seconds']:>9.1f} {row['target_s']!s:>7} {row['met']:>4}")
    write_csv(args.out, rows, ["operation", "item", "seconds", "target_s", "met", "cores"])
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
