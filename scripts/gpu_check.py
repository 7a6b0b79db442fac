"""The GPU check: every CUDA path of the course in one run on a GPU machine with no network, one summary table.

Run by scripts/gpu_check.sh (`make gpu-check OUT=folder`), which picks the interpreter. Steps, each timed:

  install     the wheelhouse (`make wheelhouse`: .whl/gpu-check/) into a private folder (pip --target, no index),
              put on PYTHONPATH for every later step; bubblewrap's .deb unpacked into / when bwrap is missing
  gpu_tests   the tests marked gpu (tests/package/test_sd.py, tests/course/test_training.py): none may skip
  training    a digits model (cosine, epsilon, the committed digits-cosine-eps settings) for 300 steps on CUDA;
              its time per step against the committed CPU figure (one thread)
  sd_latency  benchmarks/sd_loop_vs_pipe.py: our loop against pipe(...) on SD 1.5's architecture (random weights,
              float16, 512x512, batch 1) for DDIM, Euler, Euler a and DPM++ 2M Karras at 20/30/50 steps: the
              ratio ours/diffusers (goal <= 1.05) and peak memory
  autograde   `make autograde-gpu` on Project B in a copy of the course, one correct and one wrong submission:
              full marks and fewer, time per submission (the dry run: `make autograde` on assignment 01)

Everything is written under --out (at most 8 files: summary.md, summary.csv, gpu_tests.xml, training.json,
sd_loop_vs_pipe.csv, grading_report.md, and the caller's gpu_check.log); work files go to --work. The exit
status is 1 if any step failed. GPU_CHECK_DRY=1: the same steps on the CPU with tiny settings and `make autograde`
(the wheelhouse only checked for Python 3.12 tags, when built), so that tests/course/test_gpu_check.py keeps the
script from rotting. Only the standard library is imported here: the rest is not installed until `install`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl" / "gpu-check"
# The whole run's budget: a device call may run 600 s, and the summary must be written before that.
BUDGET = 540.0
STARTED = time.monotonic()
STEPS = ("install", "gpu_tests", "training", "sd_latency", "autograde")
STATUSES = ("ok", "FAIL", "skip")
# What make autograde-gpu grades: Project B (its mistakes table supplies the wrong submission). The dry run grades
# assignment 01 instead, a few seconds a notebook on the CPU: the same make target's path, at a tiny setting.
GRADED = {False: ("project_b_samplers", "mistakes_project_b.py"), True: ("01_forward_process", "mistakes_01.py")}
CPU_REFERENCE = ROOT / "src" / "diffusion_internals" / "course" / "checkpoints" / "digits-cosine-eps" / "training.json"
# The tags of the GPU image's Python (3.12, manylinux x86-64): what `pip install --target` there will accept.
PY312_TAGS = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--only-binary=:all:"]
PY312_TAGS += [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]


@dataclass
class Check:
    """Where the check runs and what it has found so far."""

    out: Path
    work: Path
    dry: bool
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    rows: list[dict[str, str]] = field(default_factory=list)

    def run(self, argv: list[str], name: str, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
        """A step's command, its output kept in the log (printed) and returned; never past the run's BUDGET."""
        print(f"$ {' '.join(argv)}", flush=True)
        timeout = min(timeout, max(10.0, BUDGET - (time.monotonic() - STARTED)))
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", flush=True)
        if done.returncode != 0:
            print(f"{name}: exit status {done.returncode}", flush=True)
        return done


def install(check: Check) -> tuple[str, str]:
    wheels = sorted(WHEELS.glob("*.whl"))
    if check.dry:
        if not wheels:
            return "skip", f"no wheelhouse in {WHEELS.relative_to(ROOT)} (make wheelhouse): nothing to check"
        done = check.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", "--quiet"]
            + ["--target", str(check.work / "site")]
            + PY312_TAGS
            + [str(w) for w in wheels],
            "install",
            300,
        )
        return ("ok", f"{len(wheels)} wheels installable on CPython 3.12") if done.returncode == 0 else ("FAIL", "")
    if not wheels:
        return "FAIL", f"no wheels in {WHEELS}: run make wheelhouse where there is a network, and carry .whl"
    if shutil.which("bwrap") is None:
        for deb in WHEELS.glob("bubblewrap_*.deb"):
            check.run(["dpkg", "-x", str(deb), "/"], "install", 120)
        if shutil.which("bwrap") is None:
            return "FAIL", "bwrap is missing and no bubblewrap .deb in the wheelhouse unpacked it"
    site = check.work / "site"
    done = check.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", "--quiet"]
        + ["--target", str(site)]
        + [str(w) for w in wheels],
        "install",
        600,
    )
    if done.returncode != 0:
        return "FAIL", "pip install of the wheelhouse failed (log)"
    # The package from the working tree (src/), the rest from the wheelhouse.
    paths = [str(ROOT / "src"), str(site), check.env.get("PYTHONPATH", "")]
    check.env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return "ok", f"{len(wheels)} wheels into {site}"


def gpu_tests(check: Check) -> tuple[str, str]:
    report = check.out / "gpu_tests.xml"
    files = ["tests/package/test_sd.py", "tests/course/test_training.py"]
    argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    # Its own temporary folder: a pytest run prunes the numbered ones it shares (the suite's, in the dry run).
    argv.append(f"--basetemp={check.work / 'pytest'}")
    done = check.run(argv + files, "gpu_tests", 900, cwd=ROOT)
    if not report.exists():
        return "FAIL", f"pytest exited {done.returncode} without a report"
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    summary = f"{passed} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"
    # On a GPU none may skip (a skip means CUDA was not seen); on the CPU every one skips.
    good = done.returncode == 0 and counts["tests"] > 0 and (check.dry or counts["skipped"] == 0)
    return ("ok" if good else "FAIL"), summary


def training(check: Check) -> tuple[str, str]:
    steps, device = (3, "cpu") if check.dry else (300, "cuda")
    folder = check.work / "digits-cosine-eps"
    argv = [sys.executable, "-m", "diffusion_internals.course", "--dataset", "digits", "--schedule", "cosine"]
    argv += ["--prediction", "eps", "--steps", str(steps), "--device", device, "--no-evaluate", "--no-progress"]
    done = check.run(argv + ["--out", str(folder)], "training", 900, cwd=check.work)
    if done.returncode != 0 or not (folder / "training.json").exists():
        return "FAIL", "training failed (log)"
    shutil.copy2(folder / "training.json", check.out / "training.json")
    record = json.loads((folder / "training.json").read_text())
    reference = json.loads(CPU_REFERENCE.read_text())
    per_step = record["wall_clock_s"] / steps
    cpu_per_step = reference["wall_clock_s"] / reference["steps"]
    threads = reference["torch_threads"]
    return "ok", (
        f"{steps} steps on {device}: {per_step:.4f} s/step, {cpu_per_step / per_step:.1f}x the committed "
        f"{cpu_per_step:.4f} s/step on {threads} CPU thread(s); final loss {record['metrics']['train_loss']:.3f}"
    )


def sd_latency(check: Check) -> tuple[str, str]:
    table = check.out / "sd_loop_vs_pipe.csv"
    argv = [sys.executable, str(ROOT / "benchmarks" / "sd_loop_vs_pipe.py"), "--out", str(table)]
    if check.dry:
        argv += ["--samplers", "DDIM", "Euler a", "--steps", "2", "--repeats", "1", "--warmup", "0"]
    done = check.run(argv, "sd_latency", 900, cwd=ROOT)
    if done.returncode != 0 or not table.exists():
        return "FAIL", "benchmarks/sd_loop_vs_pipe.py failed (log)"
    with table.open() as f:
        rows = list(csv.DictReader(f))
    worst = max(rows, key=lambda r: float(r["ratio_ours_pipe"]))
    peaks = [float(r[k]) for r in rows for k in ("peak_gib_pipe", "peak_gib_ours") if r[k]]
    peak = f"; peak {max(peaks):.2f} GiB" if peaks else ""
    goal = "goal met" if float(worst["ratio_ours_pipe"]) <= 1.05 else "ABOVE the 1.05 goal"
    return "ok", (
        f"{len(rows)} runs, {rows[0]['pipeline']}, {rows[0]['dtype']} {rows[0]['resolution']}; worst ours/pipe "
        f"{worst['ratio_ours_pipe']} ({worst['sampler']}, {worst['steps']} steps): {goal}{peak}"
    )


def course_copy(work: Path, assignment: str) -> Path:
    """The course files `make autograde` needs, with one assignment (no git needed)."""
    course = work / "course"
    shutil.rmtree(course, ignore_errors=True)
    course.mkdir(parents=True)
    for name in ("Makefile", "nbgrader_config.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, course / name)
    for folder in ("requirements", "scripts", f"solutions/{assignment}", f"exercises/{assignment}"):
        shutil.copytree(ROOT / folder, course / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return course


def submissions(check: Check, course: Path) -> None:
    """submitted/correct (the reference answers in the release) and submitted/wrong (one plausible mistake)."""
    assignment, mistakes = GRADED[check.dry]
    (notebook,) = [p.name for p in (ROOT / "solutions" / assignment).glob("*.ipynb")]
    script = f"""
import importlib.util, nbformat
from pathlib import Path
from diffusion_internals.course.grading.solutions import solved_release, with_answers
course, root = Path({str(course)!r}), Path({str(ROOT)!r})
release = course / "exercises" / "{assignment}" / "{notebook}"
correct = solved_release(release, course / "solutions" / "{assignment}" / "{notebook}")
spec = importlib.util.spec_from_file_location("m", root / "tests" / "course" / "{mistakes}")
mistakes = importlib.util.module_from_spec(spec); spec.loader.exec_module(mistakes)
mistake = mistakes.MISTAKES[0]
wrong = with_answers(nbformat.from_dict(correct), {{mistake["cell"]: mistake["source"]}})
for student, nb in (("correct", correct), ("wrong", wrong)):
    target = course / "submitted" / student / "{assignment}" / "{notebook}"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
"""
    done = check.run([sys.executable, "-c", script], "autograde", 300)
    if done.returncode != 0:
        raise RuntimeError("could not write the two submissions (log)")


def scores(check: Check, course: Path, assignment: str) -> dict[str, list[float]]:
    """{student: [score, automatic maximum]} from the gradebook."""
    script = f"""
import json
from nbgrader.api import Gradebook
with Gradebook("sqlite:///{course / "gradebook.db"}") as gradebook:
    out = {{}}
    for student in ("correct", "wrong"):
        s = gradebook.find_submission("{assignment}", student)
        auto = sum(g.max_score for n in s.notebooks for g in n.grades if g.auto_score is not None)
        out[student] = [s.score, auto]
print(json.dumps(out))
"""
    done = check.run([sys.executable, "-c", script], "autograde", 120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def environment_bin(work: Path) -> Path:
    """A bin folder for make (its BIN, first on its PATH): this Python as `python`, and the programs nbgrader runs
    by name (itself, alembic for the gradebook) as this Python's modules, so that they see the wheelhouse too."""
    folder = work / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    # Scripts, not symlinks: a virtual environment's Python started through a symlink elsewhere loses its packages.
    for program, run in (("python", ""), ("nbgrader", " -m nbgrader"), ("alembic", " -m alembic")):
        wrapper = folder / program
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}"{run} "$@"\n')
        wrapper.chmod(0o755)
    return folder


def autograde(check: Check) -> tuple[str, str]:
    assignment = GRADED[check.dry][0]
    course = course_copy(check.work, assignment)
    submissions(check, course)
    target = "autograde" if check.dry else "autograde-gpu"
    folder = environment_bin(check.work)
    # BIN: this interpreter (its packages, and the wheelhouse on PYTHONPATH); SETUP=0: never build a .venv here.
    argv = ["make", "-C", str(course), target, f"ASSIGNMENT={assignment}", "JOBS=1", f"BIN={folder}", "SETUP=0"]
    argv.append("GPU_CELL_TIMEOUT=240")  # inside the run's budget (the class default is 1800 s a cell)
    start = time.perf_counter()
    done = check.run(argv, "autograde", 1800)
    seconds = time.perf_counter() - start
    if (course / "grading_report.md").exists():
        shutil.copy2(course / "grading_report.md", check.out / "grading_report.md")
    if done.returncode != 0:
        return "FAIL", f"make {target} exited {done.returncode} (log, grading_report.md)"
    got = scores(check, course, assignment)
    (correct, maximum), (wrong, _) = got["correct"], got["wrong"]
    good = correct == maximum > 0 and 0 <= wrong < correct
    return ("ok" if good else "FAIL"), (
        f"make {target} on {assignment}: correct {correct:g}/{maximum:g}, wrong {wrong:g}/{maximum:g}; "
        f"{seconds / 2:.0f} s per submission (release and nbgrader included)"
    )


def summary(check: Check) -> str:
    lines = ["| step | status | seconds | result |", "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['status']} | {r['seconds']} | {r['result']} |" for r in check.rows]
    mode = "dry run on the CPU (GPU_CHECK_DRY=1)" if check.dry else "GPU"
    return f"# GPU check: {mode}\n\n" + "\n".join(lines) + "\n"


def write_summary(check: Check) -> str:
    table = summary(check)
    (check.out / "summary.md").write_text(table)
    with (check.out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "status", "seconds", "result"])
        writer.writeheader()
        writer.writerows(check.rows)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder for the summary and its files")
    parser.add_argument("--work", type=Path, default=None, help="work files (default: <out>/../gpu-check-work)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or out.parent / f"{out.name}-work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    check = Check(out=out, work=work, dry=os.environ.get("GPU_CHECK_DRY") == "1")
    check.env.setdefault("HF_HUB_OFFLINE", "1")
    steps: dict[str, Callable[[Check], tuple[str, str]]] = {
        "install": install,
        "gpu_tests": gpu_tests,
        "training": training,
        "sd_latency": sd_latency,
        "autograde": autograde,
    }
    for name in STEPS:
        start = time.perf_counter()
        print(f"\n== {name}", flush=True)
        try:
            status, result = steps[name](check)
        except Exception as error:  # a step that breaks is reported, and the others still run
            status, result = "FAIL", f"{type(error).__name__}: {error}"
        check.rows.append(
            {"step": name, "status": status, "seconds": f"{time.perf_counter() - start:.0f}", "result": result}
        )
        write_summary(check)  # after every step: a run cut short still leaves what it found
        if name == "install" and status == "FAIL":
            break
    print("\n" + write_summary(check))
    return 1 if any(r["status"] == "FAIL" for r in check.rows) or len(check.rows) < len(STEPS) else 0


if __name__ == "__main__":
    sys.exit(main())
