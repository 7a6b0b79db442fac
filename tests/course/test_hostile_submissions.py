"""Grading that loses nothing and crashes on nothing: `make autograde` on broken and hostile submissions.

One class of submissions for assignment 01 (tests/course/hostile.py) is graded in a temporary copy of the
course with scripts/autograde.py, the body of `make autograde`: every case must get its expected
score, the other students must be unaffected, nothing may be lost, a second run must change
nothing, and the feedback (or the grading report, for files nbgrader cannot read) must say what
went wrong in words a learner understands. The per-cell timeout is shortened to 20 s here so the
infinite loop costs 20 s, not the classroom's 300 s.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
from hostile import ASSIGNMENT, EXPECTED, NOTEBOOK, Maker, write_submissions
from support import BIN, ROOT, course_env, run
from traitlets.config.loader import PyFileConfigLoader

NBGRADER = [str(BIN / "python"), "-m", "nbgrader"]
pytestmark = pytest.mark.slow


def scores(course: Path) -> dict[str, float]:
    from nbgrader.api import Gradebook

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        return {s.student.id: s.score for s in gradebook.find_assignment(ASSIGNMENT).submissions}


def autograde(course: Path):
    env = {**course_env(), "DIFFUSION_INTERNALS_CELL_TIMEOUT": "20"}
    import subprocess

    return subprocess.run(
        [str(BIN / "python"), str(ROOT / "scripts" / "autograde.py"), "--course", str(course)],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("class")
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    assert run([*NBGRADER, "generate_assignment", ASSIGNMENT, "--force"], cwd=course).returncode == 0
    maker = Maker(course / "exercises" / ASSIGNMENT / NOTEBOOK, course / "solutions" / ASSIGNMENT / NOTEBOOK)
    write_submissions(maker, course / "submitted")
    submitted_before = {p: p.read_bytes() for p in (course / "submitted").rglob("*") if p.is_file()}
    first = autograde(course)
    first_scores = scores(course)
    feedback = run([*NBGRADER, "generate_feedback", ASSIGNMENT, "--force"], cwd=course)
    second = autograde(course)
    return course, first, first_scores, second, scores(course), feedback, submitted_before


def test_autograde_finishes_and_records_every_submission(graded):
    course, first, first_scores, *_ = graded
    assert first.returncode == 0, f"autograde failed:\n{first.stdout[-3000:]}\n{first.stderr[-3000:]}"
    assert set(first_scores) == set(EXPECTED), (
        f"students missing from the gradebook: {set(EXPECTED) - set(first_scores)}"
    )


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_case_gets_its_expected_score(graded, case):
    _, _, first_scores, *_ = graded
    assert first_scores[case] == EXPECTED[case][0], f"{case}: scored {first_scores[case]}, expected {EXPECTED[case][0]}"


@pytest.mark.parametrize("case", sorted(c for c, (_, phrase) in EXPECTED.items() if phrase))
def test_feedback_or_report_says_what_went_wrong(graded, case):
    course, first, *_ = graded
    phrase = EXPECTED[case][1]
    report = first.stdout  # the first run's report (a second run finds the renamed notebook already copied)
    page = course / "feedback" / case / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text())) if page.is_file() else ""
    assert phrase in text or (phrase in report and case in report), (
        f"{case}: neither the feedback page nor the grading report says {phrase!r}"
    )


def test_a_second_run_changes_nothing_and_nothing_is_lost(graded):
    course, _, first_scores, second, second_scores, _, submitted_before = graded
    assert second.returncode == 0, second.stdout[-3000:]
    assert second_scores == first_scores
    for path, content in submitted_before.items():  # the students' files are untouched (renames are copies)
        assert path.is_file() and path.read_bytes() == content, f"{path} was changed or removed"


def test_feedback_is_generated_for_every_graded_notebook(graded):
    course, _, first_scores, _, _, feedback, _ = graded
    assert feedback.returncode == 0, feedback.stderr[-3000:]
    for case in first_scores:
        if case != "invalid_json":
            assert (course / "feedback" / case / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")).is_file(), case


def test_a_flood_of_output_is_truncated_in_the_graded_notebook(graded):
    course, *_ = graded
    size = (course / "autograded" / "stdout_flood" / ASSIGNMENT / NOTEBOOK).stat().st_size
    assert size < 2_000_000, (
        f"the autograded notebook holds {size} bytes of output: nbgrader's LimitOutput did not apply"
    )


def test_what_grading_does_not_protect_against_is_what_the_readme_says(graded):
    # nbgrader runs student code with the grader's rights: the snooping submission could list the
    # hidden tests and write into the course folder. This is documented, not prevented; the README
    # tells instructors to grade in a container or as an unprivileged user.
    course, *_ = graded
    assert (course / "written_by_a_student.txt").exists()
    readme = (ROOT / "README.md").read_text()
    assert "grader's rights" in readme and "docker run" in readme
