"""Submissions of assignment 01 made from the released notebook: correct, broken and hostile.

Each case is a function from the release (and the instructor's answers) to what lands in
``submitted/<case>/01_forward_process/``: a notebook, or raw text for a file that is not one.
``EXPECTED`` is the score each case must get out of 12, and what its feedback must say.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat

from diffusion_internals.course.grading.solutions import solution_code, solved_release

ASSIGNMENT = "01_forward_process"
NOTEBOOK = "forward_process.ipynb"


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


class Maker:
    """Builds submissions from a release notebook and the instructor's answers."""

    def __init__(self, release: Path, source: Path) -> None:
        self.release, self.source, self.answers = release, source, solution_code(source)

    def solved(self) -> nbformat.NotebookNode:
        return solved_release(self.release, self.source)

    def with_cell(self, grade_id: str, source: str) -> nbformat.NotebookNode:
        nb = self.solved()
        for cell in nb.cells:
            if meta(cell).get("grade_id") == grade_id:
                cell.source = source
        return nb

    def without(self, grade_id: str) -> nbformat.NotebookNode:
        nb = self.solved()
        nb.cells = [c for c in nb.cells if meta(c).get("grade_id") != grade_id]
        return nb


LINEAR = "linear_betas"  # the first task's solution cell; its test cell is worth 2 points
SCALED = """
def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
"""


def _linear(body: str) -> str:
    return f"def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):\n{body}\n{SCALED}"


def _reordered(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.cells = nb.cells[::-1]
    return nb


CASES: dict[str, Callable[[Maker], nbformat.NotebookNode | str]] = {
    "correct": lambda m: m.solved(),
    "untouched": lambda m: nbformat.read(m.release, as_version=4),
    "wrong_answer": lambda m: m.with_cell(
        LINEAR, _linear("    return torch.linspace(beta_start, 2 * beta_end, num_steps, dtype=torch.float64)")
    ),
    "exception": lambda m: m.with_cell(LINEAR, _linear("    raise RuntimeError('my code is not finished')")),
    "infinite_loop": lambda m: m.with_cell(LINEAR, "while True:\n    pass"),
    "memory_hog": lambda m: m.with_cell(
        LINEAR, "hog = torch.ones(12 * 2**30, dtype=torch.uint8)  # 12 GiB\n" + m.answers[LINEAR]
    ),
    "nan_output": lambda m: m.with_cell(
        LINEAR, _linear("    return torch.full((num_steps,), float('nan'), dtype=torch.float64)")
    ),
    "wrong_shape_dtype": lambda m: m.with_cell(
        LINEAR, _linear("    return torch.linspace(beta_start, beta_end, num_steps + 1)")
    ),
    "edited_test_cell": lambda m: m.with_cell("test_linear_betas", "print('all tests passed, trust me')"),
    "deleted_test_cell": lambda m: m.without("test_linear_betas"),
    "deleted_solution_cell": lambda m: m.without(LINEAR),
    "reordered_cells": lambda m: _reordered(m.solved()),
    "invalid_json": lambda m: '{"cells": [ {"cell_type": "code", "source": "oops" ',
    "uses_reference": lambda m: m.with_cell(
        LINEAR,
        (
            "from diffusion_internals import schedules as S\n\n"
            "def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):\n"
            "    return S.make_betas('linear', num_steps, beta_start=beta_start, beta_end=beta_end)\n\n"
            "def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):\n"
            "    return S.make_betas('scaled_linear', num_steps, beta_start=beta_start, beta_end=beta_end)"
        ),
    ),
    "stdout_flood": lambda m: m.with_cell(
        "crossing", m.answers["crossing"] + "\nfor _ in range(100_000):\n    print('x' * 200)"
    ),
    "writes_and_snoops": lambda m: m.with_cell(
        "crossing",
        m.answers["crossing"]
        + (
            "\nimport glob, pathlib\nLEAKED = glob.glob('../../../solutions/*/*.ipynb')\n"
            "pathlib.Path('../../../written_by_a_student.txt').write_text('x')"
        ),
    ),
}
RENAMED = "renamed_notebook"  # a correct notebook saved as my_forward_process.ipynb

# case -> (score out of 12, a phrase the feedback or the grading report must contain)
EXPECTED: dict[str, tuple[float, str]] = {
    "correct": (12, ""),
    "untouched": (0, "NotImplementedError"),
    "wrong_answer": (10, "differ from the reference"),
    "exception": (10, "my code is not finished"),
    "infinite_loop": (10, "Timeout"),
    "memory_hog": (10, "can't allocate memory"),
    "nan_output": (10, "NaN or infinite"),
    "wrong_shape_dtype": (10, "expected shape"),
    "edited_test_cell": (12, ""),  # nbgrader restores locked cells from the gradebook
    "deleted_test_cell": (10, ""),  # the deleted cell's points are lost; nothing else
    "deleted_solution_cell": (10, "NameError"),
    "reordered_cells": (0, "NameError"),  # tests run before the code they test
    "invalid_json": (0, "not valid JSON"),  # in the grading report
    "uses_reference": (12, "uses the reference package"),  # in the grading report
    "stdout_flood": (12, ""),
    "writes_and_snoops": (12, ""),
    RENAMED: (12, "graded it as"),  # in the grading report
}


def write_submissions(maker: Maker, submitted: Path) -> None:
    """Write every case (and the renamed notebook) under submitted/<case>/01_forward_process/."""
    for case, make in {**CASES, RENAMED: lambda m: m.solved()}.items():
        folder = submitted / case / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        content = make(maker)
        name = "my_forward_process.ipynb" if case == RENAMED else NOTEBOOK
        if isinstance(content, str):
            (folder / name).write_text(content)
        else:
            nbformat.write(content, folder / name)
