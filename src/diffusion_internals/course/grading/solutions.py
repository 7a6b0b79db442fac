"""The instructor's answers put back into a released notebook: the submission that must score full marks.

A source notebook in solutions/ holds each answer between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
in a cell that nbgrader's metadata marks as a solution; ``make release`` writes exercises/ with those
cells stubbed out. Filling the release's solution cells with the answers gives what a correct learner
submits. The grading tests (tests/course/test_nbgrader.py, tests/course/hostile.py) and the autograding
benchmark (benchmarks/course_operations.py) start from it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

__all__ = ["SOLUTION_MARKERS", "solution_code", "solved_release", "with_answers"]

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def _nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solution_code(source: Path) -> dict[str, str]:
    """The code of every solution cell of a source notebook, by grade_id, without the solution markers."""
    return {
        _nbgrader(cell)["grade_id"]: "\n".join(
            line for line in cell.source.splitlines() if line.strip() not in SOLUTION_MARKERS
        )
        for cell in nbformat.read(source, as_version=4).cells
        if _nbgrader(cell).get("solution")
    }


def solved_release(release: Path, source: Path) -> nbformat.NotebookNode:
    """The release notebook with every solution cell replaced by the source notebook's answer for its grade_id."""
    answers = solution_code(source)
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta.get("solution"):
            if meta["grade_id"] not in answers:
                raise ValueError(
                    f"release {release} has the solution cell {meta['grade_id']!r}, which source {source} does not "
                    f"have (its solution cells: {sorted(answers)}); regenerate the release (make release)"
                )
    return with_answers(nb, answers)


def with_answers(nb: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """nb with the source of each cell whose grade_id is in answers replaced by it (in place; nb is returned)."""
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb
