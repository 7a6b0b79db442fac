"""Plausible learner mistakes lose points, and lose them once: graded by the sandboxed grader.

Each `tests/course/mistakes_<assignment>.py` lists mistakes a learner could make (a solution cell
replaced by wrong code) and the test cells each must fail. Every mistake is graded like a
submission, the student's cells in the sandbox and the tests in the grader's process, and the set
of failing test cells must be exactly the listed one: a mistake that costs nothing means a test too
weak, one that costs two cells means tests that grade one function through another.
"""

from __future__ import annotations

import copy
import importlib

import nbformat
import pytest
from support import ROOT, requires_sandbox

from diffusion_internals.course.grading.harness import is_test_cell, meta
from diffusion_internals.course.grading.jobs import run_jobs
from diffusion_internals.course.grading.sandbox import Limits
from diffusion_internals.course.grading.solutions import solved_release

pytestmark = [pytest.mark.slow, requires_sandbox()]

TABLES = {
    "01_forward_process": "mistakes_01",
    "02_training": "mistakes_02",
    "03_ddpm_ddim": "mistakes_03",
    "04_ode_samplers": "mistakes_04",
    "05_guidance": "mistakes_05",
    "project_a_schedules": "mistakes_project_a",
    "project_b_samplers": "mistakes_project_b",
    "project_c_production": "mistakes_project_c",
}
MINIMUM = {"01_forward_process": 8, "03_ddpm_ddim": 8, "04_ode_samplers": 8, "02_training": 6, "05_guidance": 6}
MINIMUM |= {"project_a_schedules": 3, "project_b_samplers": 3, "project_c_production": 4}


def graded_notebook(assignment: str) -> nbformat.NotebookNode:
    """The solved release with the instructor's locked cells (hidden tests included), as nbgrader grades it."""
    release = next((ROOT / "exercises" / assignment).glob("*.ipynb"))
    source = nbformat.read(ROOT / "solutions" / assignment / release.name, as_version=4)
    locked = {meta(c)["grade_id"]: c.source for c in source.cells if meta(c).get("locked")}
    nb = solved_release(release, ROOT / "solutions" / assignment / release.name)
    for cell in nb.cells:
        if meta(cell).get("locked"):
            cell.source = locked[meta(cell)["grade_id"]]
    return nb


@pytest.mark.parametrize("assignment", sorted(TABLES))
def test_each_mistake_fails_exactly_its_test_cells_and_the_solution_fails_none(assignment):
    mistakes = importlib.import_module(TABLES[assignment]).MISTAKES
    assert len(mistakes) >= MINIMUM[assignment]
    base = graded_notebook(assignment)
    tests = {meta(c)["grade_id"] for c in base.cells if is_test_cell(c)}
    cases = [("the solution", base, set())]
    for mistake in mistakes:
        nb = copy.deepcopy(base)
        cells = [c for c in nb.cells if meta(c).get("grade_id") == mistake["cell"] and meta(c).get("solution")]
        assert len(cells) == 1, f"{mistake['name']}: no solution cell {mistake['cell']!r}"
        assert set(mistake["fails"]) <= tests and mistake["fails"], mistake["name"]
        cells[0].source = mistake["source"]
        cases.append((mistake["name"], nb, set(mistake["fails"])))
    limits = Limits(cell_timeout=120, notebook_timeout=600)
    results: dict[int, dict] = {}
    payloads = [(nbformat.writes(nb), limits.__dict__, True) for _, nb, _ in cases]
    run_jobs(payloads, jobs=2, on_result=results.__setitem__)
    problems = []
    for index, (name, _, expected) in enumerate(cases):
        verdict = results[index]
        failed = {grade_id for grade_id, r in verdict["tests"].items() if not r["passed"]}
        if verdict["status"] != "graded" or failed != expected:
            messages = {g: verdict["tests"][g]["message"][:200] for g in failed}
            problems.append(
                f"{name}: failed {sorted(failed)}, expected {sorted(expected)} ({verdict['reason']}) {messages}"
            )
    assert not problems, "\n".join(problems)
