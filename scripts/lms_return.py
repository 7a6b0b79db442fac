"""Grades and feedback back to Canvas or Moodle: the body of `make lms-grades`.

    python scripts/lms_return.py --lms canvas|moodle [--column NAME] [--course DIR] ASSIGNMENT

Run after `make autograde` and `make feedback`. Writes into ``downloaded/<assignment>/``:

* ``<lms>_grades.csv``: every student of the gradebook with their score (nbgrader's Gradebook API), in the
  shape the LMS imports. Canvas (Grades > Import): ``Student,ID,SIS User ID,SIS Login ID,Section,<column>``
  and a ``Points Possible`` row, matched by Canvas user id (the roster's lms_user_id) or else by "Last, First".
  Moodle (Grades > Import > CSV file): ``First name,Last name,Email address,<column>``; map Email address to
  "Email address" and the column to the assignment's grade item. A student with no graded submission gets an
  empty cell (no grade, not 0). ``--column`` (make COLUMN=...) is the grade column's header. Canvas: required,
  the assignment's header exactly as Canvas's gradebook export writes it, ``Title (id)`` (Grades > Export >
  Export Entire Gradebook, first row): Canvas's import turns a column it does not know into a NEW assignment.
  Moodle: optional (default: the nbgrader assignment id); its import asks which grade item the column fills.
* ``<lms>_feedback.zip``: each student's feedback page under the name of the entry their notebook came from
  (``lms_manifest.csv``, written by `make collect-zip`), with .html for .ipynb: Canvas "Re-upload submissions"
  or Moodle "Upload multiple feedback files in a zip" attaches each page to its student. A notebook submitted
  under another name has its page under the released name autograde graded it as (``graded_names``).

It prints who is not in the CSV or the zip and why, and which submissions Canvas marked LATE (nbgrader had no
submission time to penalise; a Late column would become a new assignment in Canvas's import). Exit status 1
when a collected notebook has no feedback page (run `make feedback` first), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import zipfile
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

CANVAS_COLUMN = re.compile(r".+ \(\d+\)")  # GradebookImporter: "Title (id)", the id in parentheses at the end


def scores(course: Path, assignment: str) -> tuple[dict, float]:
    """Every gradebook student with their score on the assignment (None without a submission), and its maximum."""
    from nbgrader.api import Gradebook, MissingEntry

    from diffusion_internals.course.grading.lms import Student

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    found = {}
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        maximum = gradebook.find_assignment(assignment).max_score
        for s in gradebook.students:
            student = Student(s.id, s.first_name or "", s.last_name or "", s.email or "", s.lms_user_id or "")
            try:
                found[student] = gradebook.find_submission(assignment, s.id).score
            except MissingEntry:
                found[student] = None
    return found, maximum


def write_grades(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def write_feedback(course: Path, assignment: str, lms: str, path: Path) -> tuple[list[str], list[str]]:
    """The feedback zip from the manifest's rows for this LMS; returns (entries written, entries with no page)."""
    from diffusion_internals.course.grading.lms import feedback_entry, graded_names, read_manifest

    rows = [r for r in read_manifest(course / "downloaded" / assignment / "lms_manifest.csv") if r["lms"] == lms]
    released = sorted(p.name for p in (course / "exercises" / assignment).glob("*.ipynb"))  # as autograde reads it
    submitted: dict[str, list[str]] = {}
    for row in rows:
        submitted.setdefault(row["student_id"], []).append(row["notebook"])
    graded = {student: graded_names(notebooks, released) for student, notebooks in submitted.items()}
    written, missing = [], []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            name = graded[row["student_id"]][row["notebook"]]
            if name is None:
                missing.append(f"{row['student_id']}: {row['notebook']} is no released notebook, so it was not graded")
                continue
            page = course / "feedback" / row["student_id"] / assignment / Path(name).with_suffix(".html")
            if page.is_file():
                archive.write(page, feedback_entry(row["entry"]))
                written.append(feedback_entry(row["entry"]))
            else:
                missing.append(f"{row['student_id']}: no {page.relative_to(course)} (run make feedback)")
    return written, missing


def late_entries(course: Path, assignment: str, lms: str) -> list[str]:
    """The submissions this LMS's download marked late (only Canvas marks them), as "student (entry)"."""
    from diffusion_internals.course.grading.lms import read_manifest

    rows = read_manifest(course / "downloaded" / assignment / "lms_manifest.csv")
    return [f"{r['student_id']} ({r['entry']})" for r in rows if r["late"] and r["lms"] == lms]


def notes(lms: str, found: dict, late: list[str], missing: list[str]) -> list[str]:
    """Who is not in the CSV or the zip as they might expect, and why; LATE submissions; missing feedback."""
    none = sorted(s.id for s, v in found.items() if v is None)
    lines = [f"No graded submission (empty grade cell): {', '.join(none)}"] if none else []
    if lms == "moodle" and (no_email := sorted(s.id for s in found if not s.email)):
        lines.append(f"Not in the CSV, no email address (Moodle matches by it): {', '.join(no_email)}")
    if lms == "canvas" and (no_id := sorted(s.id for s in found if not s.lms_user_id)):
        lines.append(f"No Canvas user id (Canvas matches these by name): {', '.join(no_id)}")
    if late:
        lines.append(f"LATE in Canvas (no penalty applied by nbgrader): {', '.join(late)}")
    return lines + [f"NO FEEDBACK PAGE: {m}" for m in missing]


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The LMS and a released assignment; the error names the make variable and what it allows."""
    from diffusion_internals.course.grading.lms import LMS_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", nargs="?", default="", help="the assignment, e.g. 01_forward_process")
    parser.add_argument("--lms", default="", help=f"the LMS to write for, one of {list(LMS_NAMES)}")
    parser.add_argument("--column", default="", help="the grade column's header (Canvas: required, 'Title (id)')")
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    args.course = args.course.resolve()
    usage = "make lms-grades ASSIGNMENT=01_forward_process LMS=canvas"
    if args.lms not in LMS_NAMES:
        parser.error(f"LMS must be one of {list(LMS_NAMES)}, got {args.lms!r}: {usage}")
    released = sorted(p.name for p in (args.course / "exercises").iterdir() if p.is_dir())
    if args.assignment not in released:
        parser.error(f"ASSIGNMENT must be a released assignment, one of {released}; got {args.assignment!r}: {usage}")
    if args.lms == "canvas" and not CANVAS_COLUMN.fullmatch(args.column):
        parser.error(
            f"COLUMN must be the assignment's column header exactly as Canvas's gradebook export writes it, "
            f"'Title (id)' (Grades > Export > Export Entire Gradebook, first row), got {args.column!r}: Canvas's "
            f"import turns a column it does not know into a new assignment. {usage} COLUMN='Forward process (4242)'"
        )
    args.column = args.column or args.assignment  # Moodle: its import maps the column to a grade item by hand
    return args


def main(argv: list[str] | None = None) -> int:
    from diffusion_internals.course.grading.lms import grade_rows

    args = arguments(argv)
    course, assignment, lms = args.course, args.assignment, args.lms
    out = course / "downloaded" / assignment
    out.mkdir(parents=True, exist_ok=True)
    found, maximum = scores(course, assignment)
    grades = out / f"{lms}_grades.csv"
    write_grades(grades, grade_rows(lms, found, column=args.column, max_score=maximum))
    feedback = out / f"{lms}_feedback.zip"
    written, missing = write_feedback(course, assignment, lms, feedback)
    print(f"Wrote {grades.relative_to(course)}: {sum(v is not None for v in found.values())} of {len(found)} graded")
    print(f"Wrote {feedback.relative_to(course)}: {len(written)} feedback page(s)")
    print("\n".join(notes(lms, found, late_entries(course, assignment, lms), missing)))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
