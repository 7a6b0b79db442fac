"""Autograde every submission, lose none, and say what went wrong: the body of `make autograde`.

    python scripts/autograde.py [--course DIR] [ASSIGNMENT ...]

For each assignment with submissions (``submitted/<student>/<assignment>/``), before nbgrader runs:

* a notebook under another name (``my_forward_process.ipynb``) when exactly one released name is
  missing is copied to the released name, the student's file kept, so the work is graded;
* a notebook that is not valid JSON or not a notebook cannot be graded: the student is excluded
  from nbgrader's run (one broken file must not stop the class), recorded in the gradebook with
  score 0, and named in the report with the reason; the file stays untouched in submitted/;
* solution cells that use the reference package (``diffusion_internals``) are reported for the
  instructor: the hidden tests cannot tell a call of the reference from one's own code.

Then ``nbgrader autograde <assignment> --force`` runs (per-cell timeout and the memory-limited
grading kernel come from nbgrader_config.py), and every submission is checked to be in the
gradebook. The report is printed and written to ``grading_report.md``; the exit status is 1 if a
submission is neither graded nor recorded with a reason.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REFERENCE = re.compile(r"\bdiffusion_internals\b")


@dataclass
class Report:
    """What happened to an assignment's submissions."""

    assignment: str
    graded: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    reference_use: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"## {self.assignment}", "", f"- graded by nbgrader: {len(self.graded)} submission(s)"]
        out += [f"- {note}" for note in self.renamed]
        out += [f"- {student}: NOT GRADED, recorded as 0: {why}" for student, why in sorted(self.unreadable.items())]
        out += [
            f"- {student}: uses the reference package in solution cell(s) {', '.join(cells)} "
            "(graded as submitted; check against the rules)"
            for student, cells in sorted(self.reference_use.items())
        ]
        out += [
            f"- {student}: LOST: in submitted/ but not in the gradebook (see nbgrader's log above)"
            for student in self.missing
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
        for name in released:
            cells = nbformat.read(folder / name, as_version=4).cells
            used = [
                c.metadata.get("nbgrader", {}).get("grade_id", "?")
                for c in cells
                if c.cell_type == "code"
                and c.metadata.get("nbgrader", {}).get("solution")
                and REFERENCE.search(c.source)
            ]
            if used:
                report.reference_use[student] = used


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


def autograde(course: Path, assignment: str) -> Report:
    """Preflight, nbgrader autograde, record the ungradable, check that nothing is lost."""
    report = Report(assignment)
    preflight(course, assignment, report)
    students = sorted(p.parent.name for p in (course / "submitted").glob(f"*/{assignment}"))
    to_grade = [s for s in students if s not in report.unreadable]
    if to_grade:
        command = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"]
        if report.unreadable:
            command.append(f"--CourseDirectory.student_id_exclude={','.join(sorted(report.unreadable))}")
        subprocess.run(command, cwd=course, check=False)  # a failure shows below as a missing submission
    if report.unreadable:
        record_zero(course, assignment, sorted(report.unreadable))
    in_gradebook = graded_students(course, assignment)
    report.graded = [s for s in to_grade if s in in_gradebook]
    report.missing = [s for s in to_grade if s not in in_gradebook]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "assignments", nargs="*", help="default: every released assignment (exercises/) with submissions"
    )
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    course = args.course.resolve()
    if not (course / "submitted").is_dir():
        print(
            "No submitted/ folder: put submissions in submitted/<student>/<assignment>/ "
            "(nbgrader collect or zip_collect)"
        )
        return 1
    # From the release, not solutions/: grading needs no hidden tests on disk (nbgrader restores them from
    # gradebook.db), so a grading machine may hold a copy of the course without solutions/.
    assignments = args.assignments or sorted(p.name for p in (course / "exercises").iterdir() if p.is_dir())
    reports = [autograde(course, a) for a in assignments if any((course / "submitted").glob(f"*/{a}"))]
    text = "\n".join(["# Grading report", ""] + [line for r in reports for line in r.lines()])
    (course / "grading_report.md").write_text(text)
    print(text)
    return 1 if any(r.missing for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
