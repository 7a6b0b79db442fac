"""Plausible learner mistakes lose points, and lose them once: graded by the sandboxed grader.

Each `tests/course/mistakes_<assignment>.py` lists mistakes a learner could make (a solution cell
replaced by wrong code) and the test cells each must fail. Every mistake is graded like a
submission, the student's cells in the sandbox and the tests in the grader's process, and the set
of failing test cells must be exactly the listed one: a mistake that costs nothing means a test too
weak, one that costs two cells means tests that grade one function through another.

The notebooks are graded without the demonstration cells that neither a test nor a learner's answer
needs (the sweeps and plots that only show results): the tests read only set-up names, learner
answers and the helpers those use, which the solution case below checks, and the whole notebooks are
graded by the full-marks test in test_nbgrader.py. That keeps this module to a few minutes.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import symtable

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
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
    "06_flow_matching": "mistakes_06",
    "project_a_schedules": "mistakes_project_a",
    "project_b_samplers": "mistakes_project_b",
    "project_c_production": "mistakes_project_c",
}
MINIMUM = {"01_forward_process": 8, "03_ddpm_ddim": 8, "04_ode_samplers": 8, "02_training": 6, "05_guidance": 6}
MINIMUM |= {"06_flow_matching": 12}
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


def names(source: str) -> tuple[set[str], set[str]]:
    """The names a cell binds at top level, and the global names it reads that it does not bind itself
    (from function bodies and comprehensions too: symtable resolves their scopes)."""
    top = symtable.symtable(TransformerManager().transform_cell(source), "<cell>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    read = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        tables += table.get_children()
        read |= {s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced()}
    return bound, read - bound - set(dir(builtins))


def needed_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """nb without the code cells that no test, answer or set-up needs, directly or through another kept cell."""
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    kept = {i for i, c in code if meta(c).get("grade_id") == "setup" or meta(c).get("solution") or is_test_cell(c)}
    info = {i: names(c.source) for i, c in code}
    while more := {i for i, _ in code if i not in kept and info[i][0] & set().union(*(info[k][1] for k in kept))}:
        kept |= more
    nb = copy.deepcopy(nb)
    nb.cells = [c for i, c in enumerate(nb.cells) if c.cell_type != "code" or i in kept]
    return nb


def cases(assignment: str) -> list[tuple[str, nbformat.NotebookNode, set[str]]]:
    """(name, notebook, the test cells it must fail): the solution first, then each listed mistake."""
    mistakes = importlib.import_module(TABLES[assignment]).MISTAKES
    assert len(mistakes) >= MINIMUM[assignment]
    base = needed_cells(graded_notebook(assignment))
    tests = {meta(c)["grade_id"] for c in base.cells if is_test_cell(c)}
    found = [("the solution", base, set())]
    for mistake in mistakes:
        nb = copy.deepcopy(base)
        cells = [c for c in nb.cells if meta(c).get("grade_id") == mistake["cell"] and meta(c).get("solution")]
        assert len(cells) == 1, f"{mistake['name']}: no solution cell {mistake['cell']!r}"
        assert set(mistake["fails"]) <= tests and mistake["fails"], mistake["name"]
        cells[0].source = mistake["source"]
        found.append((mistake["name"], nb, set(mistake["fails"])))
    return found


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[tuple[str, set[str], dict]]]:
    """Every case of every table, (name, expected failures, verdict), graded in one pool of two workers."""
    limits = Limits(cell_timeout=120, notebook_timeout=600)
    jobs = [(assignment, case) for assignment in sorted(TABLES) for case in cases(assignment)]
    results: dict[int, dict] = {}
    run_jobs(
        [(nbformat.writes(nb), limits.__dict__, True) for _, (_, nb, _) in jobs], jobs=2, on_result=results.__setitem__
    )
    graded: dict[str, list[tuple[str, set[str], dict]]] = {a: [] for a in TABLES}
    for index, (assignment, (name, _, expected)) in enumerate(jobs):
        graded[assignment].append((name, expected, results[index]))
    return graded


@pytest.mark.parametrize("assignment", sorted(TABLES))
def test_each_mistake_fails_exactly_its_test_cells_and_the_solution_fails_none(assignment, verdicts):
    problems = []
    for name, expected, verdict in verdicts[assignment]:
        failed = {grade_id for grade_id, r in verdict["tests"].items() if not r["passed"]}
        if verdict["status"] != "graded" or failed != expected:
            messages = {g: verdict["tests"][g]["message"][:200] for g in failed}
            problems.append(
                f"{name}: failed {sorted(failed)}, expected {sorted(expected)} ({verdict['reason']}) {messages}"
            )
    assert not problems, "\n".join(problems)
