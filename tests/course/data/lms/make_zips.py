"""Regenerate canvas_submissions.zip and moodle_submissions.zip, the LMS downloads of tests/course/test_lms.py.

    .venv/bin/python tests/course/data/lms/make_zips.py

Each zip holds assignment 01_forward_process as its LMS names a download (diffusion_internals.course.grading.lms
cites the sources): a correct submission (the release with the instructor's answers, as the grading tests build
it), a wrong one (mistakes_01's first mistake: it loses test_linear_betas), and the cases collect-zip must
report. Entries are written in order with a fixed date, so a run gives the same entries and bytes.
``ENTRIES`` says what each holds and what collect-zip must make of it (a student id of roster.csv, or the
reason it is not imported); the tests read it from here.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
ASSIGNMENT = "01_forward_process"
WRONG = "linear_and_scaled_linear_swapped"

CANVAS = {
    "doejane_12345_1000001_forward_process.ipynb": ("correct", "jdoe"),
    "smithjohn_LATE_23456_1000002_forward_process.ipynb": ("wrong", "jsmith"),
    "smithjohn_LATE_23456_1000003_notes.txt": ("text", "not a notebook"),
    "müllerzoë_34567_1000004_forward_process.ipynb": ("release", "older resubmission"),
    "müllerzoë_34567_1000005_forward_process-1.ipynb": ("correct", "zmuller"),
    "ghostcasper_99999_1000006_forward_process.ipynb": ("release", "no roster match"),
}
# One of each Moodle layout: folders (Moodle >= 4.1), folders with the trailing "_" of earlier versions, flat.
# Zoë's notebook is a browser's renamed copy: graded, and fed back, under the released name.
MOODLE = {
    "Jane Doe_501_assignsubmission_file/forward_process.ipynb": ("correct", "jdoe"),
    "John Smith_502_assignsubmission_file_/forward_process.ipynb": ("wrong", "jsmith"),
    "John Smith_502_assignsubmission_onlinetext_/onlinetext.html": ("text", "not a notebook"),
    "Zoë Müller_503_assignsubmission_file_forward_process (1).ipynb": ("correct", "zmuller"),
    "Ann Lee_504_assignsubmission_file/forward_process.ipynb": ("release", "ambiguous"),
    "Casper Ghost_505_assignsubmission_file/forward_process.ipynb": ("release", "no roster match"),
}
ENTRIES = {"canvas_submissions.zip": CANVAS, "moodle_submissions.zip": MOODLE}


def contents() -> dict[str, bytes]:
    """What an entry holds: the solved release, it with one mistake, the untouched release, or some text."""
    spec = importlib.util.spec_from_file_location("mistakes_01", ROOT / "tests" / "course" / "mistakes_01.py")
    mistakes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mistakes)
    from diffusion_internals.course.grading.solutions import solved_release, with_answers

    release = ROOT / "exercises" / ASSIGNMENT / "forward_process.ipynb"
    correct = solved_release(release, ROOT / "solutions" / ASSIGNMENT / "forward_process.ipynb")
    mistake = next(m for m in mistakes.MISTAKES if m["name"] == WRONG)
    wrong = with_answers(nbformat.from_dict(correct), {mistake["cell"]: mistake["source"]})
    return {
        "correct": nbformat.writes(correct).encode(),
        "wrong": nbformat.writes(wrong).encode(),
        "release": release.read_bytes(),
        "text": b"<p>I ran out of time, see my notebook.</p>\n",
    }


def build(folder: Path = HERE) -> list[Path]:
    """Write both zips into folder; returns their paths."""
    data = contents()
    written = []
    for name, entries in ENTRIES.items():
        with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry, (what, _) in sorted(entries.items()):
                info = zipfile.ZipInfo(entry, date_time=(2025, 1, 6, 12, 0, 0))
                archive.writestr(info, data[what], compress_type=zipfile.ZIP_DEFLATED)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in build():
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
