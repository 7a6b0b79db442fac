"""Import a Canvas or Moodle "download all submissions" zip into submitted/: the body of `make collect-zip`.

    python scripts/collect_zip.py --zip FILE --roster CSV [--course DIR] ASSIGNMENT

1. The roster (``id,first_name,last_name,email,lms_user_id``, nbgrader's student-import columns) goes into the
   gradebook (``nbgrader db student import``), so names and emails are known to exports and feedback.
2. The zip is copied into ``downloaded/<assignment>/archive/`` as ``<stem>.zip`` (a ``.ZIP`` renamed: nbgrader
   extracts only names ending in its ``zip_ext``, case-sensitive), replacing an earlier download there, and
   ``nbgrader zip_collect <assignment> --force`` runs with the course's collector
   (``diffusion_internals.course.grading.lms.LmsCollector``), which reads both LMSs' names, maps them to
   student ids through the roster and keeps each student's newest resubmission.
3. The report: what was imported where, notebooks not under a released name (and the name autograde grades
   them under, if any), older resubmissions, and every file NOT imported with its reason (no roster match,
   ambiguous name, not a notebook, unrecognised name). It is also in
   ``downloaded/<assignment>/lms_report.txt``; ``lms_manifest.csv`` beside it records where each notebook came
   from, for ``make lms-grades``.

Exit status: 0 when every file was imported (older resubmissions aside), 1 when a file was not or nbgrader
failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COLLECTOR = "diffusion_internals.course.grading.lms.LmsCollector"


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each argument names an existing thing; the error says which make variable to set."""
    usage = "make collect-zip ZIP=path/to/submissions.zip ASSIGNMENT=01_forward_process ROSTER=path/to/roster.csv"
    if not args.assignment:
        parser.error(f"ASSIGNMENT (the assignment) is required: {usage}")
    released = sorted(p.name for p in (args.course / "exercises").iterdir() if p.is_dir())
    if args.assignment not in released:
        parser.error(f"ASSIGNMENT must be a released assignment, one of {released}; got {args.assignment!r}")
    for name, given, suffix in (("ZIP", args.zip, ".zip"), ("ROSTER", args.roster, ".csv")):
        if not given or not Path(given).is_file() or Path(given).suffix.lower() != suffix:
            parser.error(f"{name} must name an existing {suffix} file, got {given!r}: {usage}")
    args.zip, args.roster = Path(args.zip), Path(args.roster).resolve()


def nbgrader(course: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run an nbgrader command in the course; its output is kept for the report when it fails."""
    command = [sys.executable, "-m", "nbgrader", *arguments]
    # nbgrader runs alembic by name when it creates the gradebook: this environment's bin comes first.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, check=False)


def import_roster(course: Path, students: list) -> subprocess.CompletedProcess[str]:
    """``nbgrader db student import`` of the roster as read (a spreadsheet's byte-order mark or extra columns gone)."""
    from diffusion_internals.course.grading.lms import ROSTER_COLUMNS

    with tempfile.TemporaryDirectory() as folder:
        clean = Path(folder) / "roster.csv"
        with open(clean, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(ROSTER_COLUMNS)
            writer.writerows([getattr(s, c) for c in ROSTER_COLUMNS] for s in students)
        return nbgrader(course, "db", "student", "import", str(clean))


def stage_zip(course: Path, assignment: str, zip_path: Path) -> Path:
    """Copy the download into archive/ alone as <stem>.zip, and clear the last run's report; returns its folder."""
    downloaded = course / "downloaded" / assignment
    archive = downloaded / "archive"
    shutil.rmtree(archive, ignore_errors=True)
    archive.mkdir(parents=True)
    shutil.copy2(zip_path, archive / f"{zip_path.stem}.zip")  # nbgrader's zip_ext is case-sensitive: .ZIP not opened
    for name in ("lms_report.txt", "lms_unmatched.csv"):
        (downloaded / name).unlink(missing_ok=True)
    return downloaded


def failed(step: str, result: subprocess.CompletedProcess[str]) -> int:
    print(f"collect-zip: {step} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return 1


def collect(course: Path, assignment: str, zip_path: Path, roster: Path) -> int:
    """nbgrader zip_collect with the course's collector; prints its report; 1 if any file was not imported."""
    downloaded = stage_zip(course, assignment, zip_path)
    plugin = [f"--collector={COLLECTOR}", f"--LmsCollector.roster={roster}"]
    collected = nbgrader(course, "zip_collect", assignment, "--force", *plugin)
    report = downloaded / "lms_report.txt"
    if collected.returncode != 0 or not report.exists():
        return failed(f"nbgrader zip_collect (no files in {zip_path.name}?)", collected)
    print(report.read_text(encoding="utf-8"), end="")
    with open(downloaded / "lms_unmatched.csv", newline="", encoding="utf-8") as f:
        return 1 if list(csv.DictReader(f)) else 0


def main(argv: list[str] | None = None) -> int:
    from diffusion_internals.course.grading.lms import read_roster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", nargs="?", default="", help="the assignment, e.g. 01_forward_process")
    parser.add_argument("--zip", default="", help="the LMS's download of every submission (.zip)")
    parser.add_argument("--roster", default="", help="CSV: id,first_name,last_name,email,lms_user_id")
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    args.course = args.course.resolve()
    check_arguments(parser, args)
    try:
        students = read_roster(args.roster)
    except ValueError as error:
        parser.error(f"ROSTER: {error}")
    imported = import_roster(args.course, students)
    if imported.returncode != 0:
        return failed("importing the roster into the gradebook", imported)
    print(f"Roster: {len(students)} student(s) in the gradebook (nbgrader db student import)")
    return collect(args.course, args.assignment, args.zip, args.roster)


if __name__ == "__main__":
    sys.exit(main())
