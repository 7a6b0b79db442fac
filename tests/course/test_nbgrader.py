"""The grading pipeline: solutions/ (nbgrader source) -> exercises/ (release) -> autograde.

These tests run nbgrader itself, as an instructor would, in a temporary copy of the course.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from support import BIN, ROOT, course_env, requires_sandbox, run
from traitlets.config.loader import PyFileConfigLoader

from diffusion_internals.course.grading.solutions import solved_release

SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
SOURCE_NOTEBOOKS = sorted(SOLUTIONS.glob("*/*.ipynb"))
ASSIGNMENTS = sorted({nb.parent.name for nb in SOURCE_NOTEBOOKS})
NBGRADER = [str(BIN / "python"), "-m", "nbgrader"]


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_manual(cell) -> bool:
    """A written answer graded by the instructor: a markdown cell that is both solution and graded."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "markdown" and bool(meta.get("solution")) and bool(meta.get("grade"))


@pytest.fixture(autouse=True)
def quick_notebooks(monkeypatch):
    """Graded notebooks with a long full run (Project A trains three models) run their tiny setting here."""
    monkeypatch.setenv("DIFFUSION_INTERNALS_QUICK", "1")


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    }


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory) -> Path:
    """A copy of the course with exercises/ regenerated from solutions/ by nbgrader."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    shutil.copytree(SOLUTIONS, course / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for assignment in ASSIGNMENTS:
        result = run([*NBGRADER, "generate_assignment", assignment, "--force"], cwd=course)
        assert result.returncode == 0, f"generate_assignment {assignment} failed:\n{result.stdout}\n{result.stderr}"
    return course


def test_there_are_assignments():
    assert "01_forward_process" in ASSIGNMENTS


@pytest.mark.parametrize(
    "notebook", SOURCE_NOTEBOOKS + sorted(EXERCISES.glob("*/*.ipynb")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_graded_notebooks_are_committed_without_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"{notebook.name}: cells {with_outputs} carry outputs; clear them before committing"


@pytest.mark.parametrize("notebook", SOURCE_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_notebook_structure(notebook):
    """Every graded cell hides tests; solutions are marked; the assignment is worth the points it claims."""
    nb = nbformat.read(notebook, as_version=4)
    graded = [c for c in nb.cells if nbgrader_meta(c).get("grade")]
    solutions = [c for c in nb.cells if nbgrader_meta(c).get("solution")]
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), "grade_id values must be unique"
    assert graded and solutions
    for cell in graded:
        if is_manual(cell):  # a written answer: the solution holds the model answer and the grader's rubric
            assert "Rubric" in cell.source, f"manually graded cell {nbgrader_meta(cell)['grade_id']} has no rubric"
            continue
        assert "### BEGIN HIDDEN TESTS" in cell.source, (
            f"graded cell {nbgrader_meta(cell)['grade_id']} has no hidden tests"
        )
        assert nbgrader_meta(cell).get("locked"), "graded cells must be locked"
    for cell in solutions:
        if cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source


@pytest.mark.parametrize(
    "notebook, min_points",
    [
        ("01_forward_process/forward_process.ipynb", 10),
        ("02_training/training.ipynb", 12),
        ("project_a_schedules/project_a_schedules.ipynb", 12),
        ("03_ddpm_ddim/ddpm_ddim.ipynb", 12),
        ("04_ode_samplers/ode_samplers.ipynb", 12),
        ("05_guidance/guidance.ipynb", 17),
        ("06_flow_matching/flow_matching.ipynb", 16),
        ("project_b_samplers/project_b_samplers.ipynb", 13),
        ("project_c_production/project_c_production.ipynb", 16),
    ],
)
def test_assignment_size(notebook, min_points):
    nb = nbformat.read(SOLUTIONS / notebook, as_version=4)
    graded = [nbgrader_meta(c) for c in nb.cells if nbgrader_meta(c).get("grade")]
    assert len(graded) >= 4
    assert sum(m["points"] for m in graded) >= min_points


def test_project_b_grades_timing_knee_tables_and_a_written_recommendation():
    nb = nbformat.read(SOLUTIONS / "project_b_samplers" / "project_b_samplers.ipynb", as_version=4)
    graded = {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("grade")}
    assert {"test_timing", "test_knee", "test_tables", "test_sd_images", "recommendation"} <= set(graded)
    assert is_manual(graded["recommendation"])
    assert "synchronize" in graded["test_timing"].source  # the harness is checked for CUDA synchronisation
    settings = next(c.source for c in nb.cells if nbgrader_meta(c).get("grade_id") == "settings")
    for name in ("DDIM", "Euler", "Euler a", "DPM++ 2M Karras"):
        assert f'"{name}"' in settings
    assert "STEP_COUNTS = [20, 30, 50, 100]" in settings
    # Stable Diffusion: mechanics graded on the tiny pipeline on any kernel; quality only with checkpoints.
    assert "sd.tiny_pipeline()" in graded["test_sd_images"].source
    study = next(c.source for c in nb.cells if nbgrader_meta(c).get("grade_id") == "sd_study")
    assert "NO_CHECKPOINT" in study and "load_clip()" in study and "SD_REAL" in study


def test_project_c_grades_diagnosis_slider_table_and_a_written_report():
    nb = nbformat.read(SOLUTIONS / "project_c_production" / "project_c_production.ipynb", as_version=4)
    graded = {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("grade")}
    assert {"test_eps_error", "test_diagnose", "test_slider", "test_table", "report"} <= set(graded)
    assert is_manual(graded["report"])
    # The diagnosis is graded on hidden variants of the flawed config, against the package's diagnose.
    assert "from diffusion_internals.course import production as _ref" in graded["test_diagnose"].source


def test_project_a_grades_schedules_fid_table_and_a_written_conclusion():
    nb = nbformat.read(SOLUTIONS / "project_a_schedules" / "project_a_schedules.ipynb", as_version=4)
    graded = {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("grade")}
    assert {"test_linear", "test_cosine", "test_sqrt", "test_frechet", "test_table", "conclusion"} <= set(graded)
    assert is_manual(graded["conclusion"])
    settings = next(c.source for c in nb.cells if nbgrader_meta(c).get("grade_id") == "settings")
    assert 'DATASET = "digits"' in settings and "DDIM_STEPS = 50" in settings and "cifar10" in settings


@pytest.mark.slow
def test_release_is_in_sync_with_solutions(fresh_release):
    """exercises/ is byte-identical to a fresh `nbgrader generate_assignment` of solutions/."""
    expected = files_under(fresh_release / "exercises")
    committed = files_under(EXERCISES)
    assert sorted(committed) == sorted(expected), "exercises/ has different files; run `make release` and commit"
    stale = [name for name in expected if committed[name] != expected[name]]
    assert not stale, f"exercises/ is out of date for {stale}; run `make release` and commit"


@pytest.mark.slow
def test_release_hides_solutions_and_hidden_tests(fresh_release):
    for notebook in (fresh_release / "exercises").glob("*/*.ipynb"):
        text = notebook.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "_ref."):
            assert marker not in text, f"{notebook.name}: '{marker}' leaked into the release"
        assert "raise NotImplementedError()" in text


def load_config(course: Path):
    return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()


VALIDATE = """
import json, re, sys
from nbgrader.validator import Validator
from traitlets.config.loader import PyFileConfigLoader

ansi = re.compile(r"\\x1b\\[[0-9;]*m")
config = PyFileConfigLoader("nbgrader_config.py", path=sys.argv[1]).load_config()
result = Validator(config=config).validate(sys.argv[2])
print(json.dumps([
    f"{kind}: {cell['source'].splitlines()[0]!r} -> {ansi.sub('', cell.get('raw_error', '')).strip().splitlines()[-1:]}"
    for kind, cells in result.items() for cell in cells
]))
"""


@pytest.fixture(scope="module")
def validations() -> dict[Path, list[str]]:
    """nbgrader's Validator API (the CLI exits 0 even on failure) on every source notebook, two at a time
    (each runs its own kernel on one core), in processes of their own."""

    def validate(notebook: Path) -> list[str]:
        done = subprocess.run(
            [str(BIN / "python"), "-c", VALIDATE, str(ROOT), str(notebook)],
            cwd=ROOT,
            env={**course_env(), "DIFFUSION_INTERNALS_QUICK": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            return [f"the validator failed (exit {done.returncode}): {done.stderr[-2000:]}"]
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(SOURCE_NOTEBOOKS, pool.map(validate, SOURCE_NOTEBOOKS), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", SOURCE_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_notebook_passes_validator(notebook, validations):
    """Validate finds no failing cell: the solutions pass their own tests, hidden ones included."""
    problems = validations[notebook]
    assert not problems, f"{notebook.name}:\n" + "\n".join(problems)


@pytest.mark.slow
@requires_sandbox()
def test_autograde_full_marks_for_solutions_and_zero_for_the_untouched_release(fresh_release):
    from nbgrader.api import Gradebook

    course = fresh_release
    for assignment in ASSIGNMENTS:
        for release_nb in sorted((course / "exercises" / assignment).glob("*.ipynb")):
            source_nb = course / "solutions" / assignment / release_nb.name
            for student, nb in (
                ("solver", solved_release(release_nb, source_nb)),
                ("untouched", nbformat.read(release_nb, as_version=4)),
            ):
                target = course / "submitted" / student / assignment / release_nb.name
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, target)
    # make autograde's body: every notebook in the sandbox, two at a time, then nbgrader per assignment
    result = run(
        [str(BIN / "python"), str(ROOT / "scripts" / "autograde.py"), "--course", str(course), "--jobs", "2"],
        cwd=course,
    )
    assert result.returncode == 0, f"autograde failed:\n{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
    assert "Nothing needs your attention." in result.stdout, result.stdout[-3000:]

    config = load_config(course)
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        for assignment in ASSIGNMENTS:
            solver = gradebook.find_submission(assignment, "solver")
            untouched = gradebook.find_submission(assignment, "untouched")
            assert solver.max_score > 0
            grades = [g for n in solver.notebooks for g in n.grades]
            automatic = [g for g in grades if g.auto_score is not None]
            written = [g for g in grades if g.auto_score is None]
            failing = [(g.name, g.score, g.max_score) for g in automatic if g.score != g.max_score]
            assert not failing, f"{assignment}: the reference solution lost points: {failing}"
            # Written answers wait for the instructor: flagged for manual grading, not scored 0 or lost.
            assert all(g.needs_manual_grade for g in written), [g.name for g in written if not g.needs_manual_grade]
            assert solver.score == sum(g.max_score for g in automatic)
            assert untouched.score == 0, f"{assignment}: the untouched release scored {untouched.score}"
    # The hidden tests really ran on the solver's notebook (autograde restores them).
    graded = (course / "autograded" / "solver" / "01_forward_process" / "forward_process.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" in graded

    # The rest of the instructor workflow: feedback pages and the grades export.
    for assignment in ASSIGNMENTS:
        result = run([*NBGRADER, "generate_feedback", assignment, "--force"], cwd=course)
        assert result.returncode == 0, f"generate_feedback {assignment} failed:\n{result.stderr}"
        for student in ("solver", "untouched"):
            assert list((course / "feedback" / student / assignment).glob("*.html")), f"no feedback for {student}"
    result = run([*NBGRADER, "export", "--to", "grades.csv"], cwd=course)
    assert result.returncode == 0, f"export failed:\n{result.stderr}"
    with (course / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    scores = {(r["assignment"], r["student_id"]): (float(r["score"]), float(r["max_score"])) for r in rows}
    for assignment in ASSIGNMENTS:
        score, max_score = scores[(assignment, "solver")]
        assert score == max_score - written_points(course, assignment) > 0
        assert scores[(assignment, "untouched")][0] == 0


def written_points(course: Path, assignment: str) -> float:
    """The points of an assignment's manually graded (written) answers, not yet graded for the solver."""
    from nbgrader.api import Gradebook

    with Gradebook(load_config(course).CourseDirectory.db_url) as gradebook:
        solver = gradebook.find_submission(assignment, "solver")
        return sum(g.max_score for n in solver.notebooks for g in n.grades if g.auto_score is None)
