"""Autograde every submission safely, lose none, and say what went wrong: the body of `make autograde`.

    python scripts/autograde.py [--course DIR] [--jobs N | --scheduler ADDRESS] [--force] [--gpu] [--unsafe]
                                [ASSIGNMENT ...]

For each assignment with submissions (``submitted/<student>/<assignment>/``):

1. Preflight: a notebook under another name (``my_forward_process.ipynb``) when exactly one released
   name is missing is copied to the released name (the student's file kept); a file that is not a
   notebook is recorded in the gradebook with score 0 and its reason, and the rest of the class goes on.
2. Grading: each notebook is sanitized by nbgrader's own preprocessors (the instructor's locked cells
   and hidden tests put back from the gradebook), then graded by the trusted grader
   (diffusion_internals.course.grading.harness): the student's cells in a bubblewrap sandbox with its
   own memory, process, time and output limits, the tests in the grader's process. Jobs run inline,
   on ``--jobs N`` local Dask workers, or on a Dask cluster (``--scheduler tcp://host:8786``). A
   verdict is kept in ``.grading/verdicts/`` under a key of everything it depends on, so a rerun grades
   only what changed (``--force`` grades everything again).
3. nbgrader: ``nbgrader autograde <assignment> --force`` for the students whose verdicts changed
   writes the scores to the gradebook and the graded notebooks (its Execute step takes the verdict).

The report (printed, and written to ``grading_report.md``) starts with what needs the instructor:
notebooks that could not be graded completely (with the reason), cells that timed out or crashed,
lost submissions, and use of the reference package. The exit status is 1 if a submission is
lost or could not be graded completely, 2 if the sandbox is missing (unless ``--unsafe``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

UNSAFE_BANNER = (
    "**UNSAFE: student code ran WITHOUT the sandbox (--unsafe)**: it could read the hidden tests and other "
    "students' work, reach the network and change files and grades. Use these grades only for trusted code."
)


@dataclass
class Report:
    """What happened to an assignment's submissions; `attention` lists what the instructor must look at."""

    assignment: str
    graded: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # student -> why the notebook was not graded completely
    events: dict[str, list[str]] = field(default_factory=dict)  # student -> cells that timed out, crashed, were skipped
    reference_use: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    regraded: int = 0
    reused: int = 0

    def attention(self) -> list[str]:
        out = [f"- {self.assignment} / {s}: LOST: in submitted/ but not in the gradebook" for s in self.missing]
        out += [f"- {self.assignment} / {s}: NOT GRADED COMPLETELY: {why}" for s, why in sorted(self.errors.items())]
        out += [
            f"- {self.assignment} / {s}: NOT GRADED, recorded as 0: {why}" for s, why in sorted(self.unreadable.items())
        ]
        out += [f"- {self.assignment} / {s}: {'; '.join(ev)}" for s, ev in sorted(self.events.items())]
        return out

    def lines(self) -> list[str]:
        out = [
            f"## {self.assignment}",
            "",
            f"- graded: {len(self.graded)} submission(s) "
            f"({self.regraded} graded now, {self.reused} unchanged since the last run)",
        ]
        out += [f"- {note}" for note in self.renamed]
        out += [
            f"- {student}: uses the reference package: {what} (graded as submitted; check against the rules)"
            for student, what in sorted(self.reference_use.items())
        ]
        return out + [""]


def check_notebook(path: Path) -> str | None:
    """None if path is a readable notebook, else the reason in words a student understands."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return f"{path.name} is not a text file (was a different file uploaded?)"
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        return (
            f"{path.name} is not valid JSON (line {error.lineno}, column {error.colno}): the file was damaged "
            f"or edited outside Jupyter; re-download it from your Jupyter server and resubmit"
        )
    try:
        nbformat.validate(nbformat.reads(json.dumps(content), as_version=4))
    except Exception as error:  # nbformat raises several kinds for a non-notebook
        return f"{path.name} is valid JSON but not a Jupyter notebook ({type(error).__name__})"
    return None


def preflight(course: Path, assignment: str, report: Report) -> None:
    """Fix renamed notebooks, find unreadable ones and uses of the reference package."""
    released = sorted(p.name for p in (course / "exercises" / assignment).glob("*.ipynb"))
    for folder in sorted((course / "submitted").glob(f"*/{assignment}")):
        student = folder.parent.name
        present = sorted(p.name for p in folder.glob("*.ipynb"))
        missing = [n for n in released if n not in present]
        extra = [n for n in present if n not in released]
        if len(missing) == 1 and len(extra) == 1:
            shutil.copy2(folder / extra[0], folder / missing[0])
            report.renamed.append(
                f"{student}: submitted {extra[0]!r}; graded it as {missing[0]!r} (the original is kept)"
            )
            present.append(missing[0])
        problems = [why for n in released if n in present and (why := check_notebook(folder / n))]
        problems += [f"{n} is missing (submitted: {extra or 'no notebook'})" for n in released if n not in present]
        if problems:
            report.unreadable[student] = "; ".join(problems)
            continue


def record_zero(course: Path, assignment: str, students: list[str]) -> None:
    """Put ungradable submissions in the gradebook with score 0, so exports and feedback lists show them."""
    from nbgrader.api import Gradebook, MissingEntry
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        for student in students:
            gradebook.update_or_create_student(student)
            try:
                gradebook.find_submission(assignment, student)
            except MissingEntry:
                gradebook.add_submission(assignment, student)


def graded_students(course: Path, assignment: str) -> set[str]:
    from nbgrader.api import Gradebook
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        return {s.student.id for s in gradebook.find_assignment(assignment).submissions}


class Sanitizer:
    """The notebook as nbgrader autograde will grade it: nbgrader's own sanitizing preprocessors, in order."""

    def __init__(self, course: Path) -> None:
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config.loader import PyFileConfigLoader

        self.config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
        self.db_url = CourseDirectory(config=self.config).db_url
        self.preprocessors = [p(config=self.config) for p in self.config.Autograde.sanitize_preprocessors]

    def __call__(self, assignment: str, student: str, path: Path) -> nbformat.NotebookNode:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        info = {"db_url": self.db_url, "assignment": assignment, "notebook": path.stem, "student": student}
        resources = {"nbgrader": info}
        for preprocessor in self.preprocessors:
            nb, resources = preprocessor.preprocess(nb, resources)
        return nb


@dataclass
class Batch:
    """One assignment's part of a run: its report, the verdict keys, the notebooks left to grade."""

    report: Report
    to_grade: list[str]
    released: list[Path]
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    pending: list[tuple[tuple[str, str], tuple]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def prepare(course: Path, assignment: str, options: argparse.Namespace, limits, sanitize) -> Batch:
    """Preflight; the sanitized notebooks whose verdict is not on file (all of them with --force)."""
    from diffusion_internals.course.grading.preprocessors import VerdictStore, verdict_key

    report = Report(assignment)
    preflight(course, assignment, report)
    students = sorted(p.parent.name for p in (course / "submitted").glob(f"*/{assignment}"))
    batch = Batch(
        report,
        [s for s in students if s not in report.unreadable],
        sorted((course / "exercises" / assignment).glob("*.ipynb")),
    )
    store = VerdictStore(course / ".grading" / "verdicts")
    sandboxed = not options.unsafe
    for student in batch.to_grade:
        for release in batch.released:
            path = course / "submitted" / student / assignment / release.name
            nb = sanitize(assignment, student, path)
            key = batch.keys[(student, release.stem)] = verdict_key(nb, limits, sandboxed)
            verdict = None if options.force else store.load(assignment, student, release.stem, key)
            if verdict is None:
                batch.pending.append(((student, release.stem), (nbformat.writes(nb), limits.__dict__, sandboxed)))
                batch.changed.add(student)
            elif not (course / "autograded" / student / assignment / release.name).exists():
                batch.changed.add(student)
    print(f"{assignment}: {len(batch.pending)} notebook(s) of {len(batch.to_grade)} submission(s) to grade", flush=True)
    return batch


def grade_all(course: Path, batches: list[Batch], options: argparse.Namespace) -> None:
    """Grade every pending notebook of every assignment in one pool of jobs; store each verdict as it comes."""
    from diffusion_internals.course.grading.harness import Verdict
    from diffusion_internals.course.grading.jobs import run_jobs
    from diffusion_internals.course.grading.preprocessors import VerdictStore

    store = VerdictStore(course / ".grading" / "verdicts")
    work = [(batch, who, payload) for batch in batches for who, payload in batch.pending]

    def save(index: int, verdict_json: dict) -> None:
        batch, (student, notebook), _ = work[index]
        assignment = batch.report.assignment
        verdict = Verdict.from_json(verdict_json)
        if verdict.reason and verdict.reason.startswith("the grading job failed"):
            batch.report.errors[student] = verdict.reason  # not stored: the next run tries again
            return
        store.save(assignment, student, notebook, batch.keys[(student, notebook)], verdict)
        print(f"  graded {student}/{assignment}/{notebook} in {verdict.seconds:.1f} s", flush=True)

    run_jobs([payload for _, _, payload in work], jobs=options.jobs, scheduler=options.scheduler, on_result=save)


def finish(course: Path, batch: Batch, options: argparse.Namespace, limits) -> Report:
    """nbgrader autograde for the changed students (it takes the verdicts), then check that nothing is lost."""
    from diffusion_internals.course.grading.preprocessors import VerdictStore

    report, to_grade, released, keys, changed = batch.report, batch.to_grade, batch.released, batch.keys, batch.changed
    assignment = report.assignment
    store = VerdictStore(course / ".grading" / "verdicts")
    report.regraded, report.reused = len(changed), len(to_grade) - len(changed)
    environment = dict(os.environ, DIFFUSION_INTERNALS_VERDICTS=str(store.root))
    if options.unsafe:
        environment["DIFFUSION_INTERNALS_UNSAFE_NO_SANDBOX"] = "1"
    if options.gpu:
        environment["DIFFUSION_INTERNALS_GRADING_GPU"] = "1"
    environment["DIFFUSION_INTERNALS_GRADING_THREADS"] = str(limits.threads)
    exclude = sorted(set(report.unreadable) | (set(to_grade) - changed))
    if changed:
        command = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"]
        if exclude:
            command.append(f"--CourseDirectory.student_id_exclude={','.join(exclude)}")
        subprocess.run(
            command, cwd=course, check=False, env=environment
        )  # a failure shows below as a missing submission
    if report.unreadable:
        record_zero(course, assignment, sorted(report.unreadable))
    in_gradebook = graded_students(course, assignment)
    report.graded = [s for s in to_grade if s in in_gradebook]
    report.missing = [s for s in to_grade if s not in in_gradebook]
    for student in to_grade:
        for release in released:
            verdict = store.load(assignment, student, release.stem, keys[(student, release.stem)])
            if verdict is None:
                report.errors.setdefault(student, f"{release.name}: no verdict (see the log above)")
                continue
            if verdict.status != "graded":
                report.errors[student] = f"{release.name}: {verdict.reason}"
            if verdict.events:
                report.events[student] = verdict.events
            use = verdict.reference_use
            what = [f"cell(s) {use['cells']} name it"] if use.get("cells") else []
            what += [f"imports {sorted({name for _, name in use['imports']})}"] if use.get("imports") else []
            what += [f"calls {', '.join(sorted(use['calls']))}"] if use.get("calls") else []
            if what:
                report.reference_use[student] = "; ".join(what)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "assignments", nargs="*", help="default: every released assignment (exercises/) with submissions"
    )
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument(
        "--jobs", type=int, default=1, help="notebooks graded at once on this machine (Dask LocalCluster)"
    )
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler to grade on (tcp://host:8786)")
    parser.add_argument("--force", action="store_true", help="grade every submission again, changed or not")
    parser.add_argument("--gpu", action="store_true", help="bind the GPU devices into the sandbox (make autograde-gpu)")
    parser.add_argument(
        "--unsafe", action="store_true", help="run student code WITHOUT the sandbox (the report says so)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be a whole number >= 1, got {args.jobs}")
    course = args.course.resolve()
    if not (course / "submitted").is_dir():
        print(
            "No submitted/ folder: put submissions in submitted/<student>/<assignment>/ "
            "(nbgrader collect or zip_collect)"
        )
        return 1
    if not args.unsafe:
        from diffusion_internals.course.grading.sandbox import limits_available, sandbox_problem

        problem = limits_available() or sandbox_problem()
        if problem:
            print(
                f"make autograde refuses to run student code without its sandbox: {problem}.\n"
                "To grade anyway, trusting every submission, run `make autograde UNSAFE=1` "
                "(the report then says so at the top)."
            )
            return 2
    os.chdir(course)
    # From the release, not solutions/: grading needs no hidden tests on disk (nbgrader restores them from
    # gradebook.db), so a grading machine may hold a copy of the course without solutions/.
    assignments = args.assignments or sorted(p.name for p in (course / "exercises").iterdir() if p.is_dir())
    from diffusion_internals.course.grading.preprocessors import limits_from_env

    limits = limits_from_env(gpu=args.gpu)
    if args.jobs > 1 and not args.gpu:  # share the cores: each sandbox gets its part for torch's threads
        limits = type(limits)(**{**limits.__dict__, "threads": max(1, (os.cpu_count() or 1) // args.jobs)})
    sanitize = Sanitizer(course)
    batches = [
        prepare(course, a, args, limits, sanitize) for a in assignments if any((course / "submitted").glob(f"*/{a}"))
    ]
    grade_all(course, batches, args)
    reports = [finish(course, batch, args, limits) for batch in batches]
    attention = [line for r in reports for line in r.attention()]
    text = "\n".join(
        ["# Grading report", ""]
        + ([UNSAFE_BANNER, ""] if args.unsafe else [])
        + (["## Needs your attention", "", *attention, ""] if attention else ["Nothing needs your attention.", ""])
        + [line for r in reports for line in r.lines()]
    )
    (course / "grading_report.md").write_text(text)
    print(text)
    return 1 if any(r.missing or r.errors for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
