"""nbgrader preprocessors that plug the trusted grader into `nbgrader autograde` and its feedback.

nbgrader keeps its workflow (release, collect, gradebook, feedback); nbgrader_config.py swaps three
steps:

* `RestoreHiddenTests` (before nbgrader's OverwriteCells): a locked cell that the student left as
  released gets the instructor's source back without a warning. nbgrader stores each test cell
  with its hidden tests but releases it without them, so its own check warned "checksum has
  changed" for every test cell of every submission; now the warning means a student edited a
  locked cell.
* `SandboxedExecute` (in place of nbgrader's Execute): grades the notebook with `harness`, the
  student's code in a sandbox and the tests in the grader's process, or takes the verdict that
  `scripts/autograde.py` computed for exactly this notebook in its parallel pass. It writes each
  cell's outputs, so nbgrader's SaveAutoGrades scores the test cells as usual (an error output is 0).
* `HideHiddenTests` (feedback): the feedback page shows each check's result, not its source.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import Bool, Unicode

from diffusion_internals.course.grading.harness import VERSION, Verdict, error_output, grade_notebook, meta
from diffusion_internals.course.grading.sandbox import Limits

__all__ = ["RestoreHiddenTests", "SandboxedExecute", "HideHiddenTests", "verdict_key", "VerdictStore", "UNSAFE_ENV"]

UNSAFE_ENV = "DIFFUSION_INTERNALS_UNSAFE_NO_SANDBOX"


def _release_form(source: str) -> str:
    """What `nbgrader generate_assignment` releases for a locked cell with this source (hidden tests removed)."""
    cell = {"cell_type": "code", "source": source, "metadata": {"nbgrader": {"grade": True, "locked": True}}}
    from nbformat import from_dict

    node = from_dict(cell)
    ClearHiddenTests()._remove_hidden_test_region(node)
    return node.source.strip()


class RestoreHiddenTests(NbGraderPreprocessor):
    """Put back the instructor's locked cells that the student left as released (no false checksum warning)."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook, MissingEntry

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            for cell in nb.cells:
                grade_id = meta(cell).get("grade_id")
                if not grade_id:
                    continue
                try:
                    source = gradebook.find_source_cell(grade_id, info["notebook"], info["assignment"])
                except MissingEntry:
                    continue
                if source.locked and cell.source.strip() in (source.source.strip(), _release_form(source.source)):
                    cell.source = source.source
        return nb, resources


def verdict_key(nb, limits: Limits, sandboxed: bool) -> str:
    """What a verdict depends on: the cells as graded, the limits, the grader's version."""
    from diffusion_internals import __version__

    cells = [[c.cell_type, c.source, meta(c).get("grade_id"), bool(meta(c).get("locked"))] for c in nb.cells]
    # Not the thread count: it follows JOBS, and a verdict does not depend on it.
    settings = sorted((k, v) for k, v in limits.__dict__.items() if k != "threads")
    data = [VERSION, __version__, settings, sandboxed, cells]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class VerdictStore:
    """Verdicts on disk by assignment, student and notebook, each with the key it was computed for."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, assignment: str, student: str, notebook: str) -> Path:
        return self.root / assignment / student / f"{notebook}.json"

    def load(self, assignment: str, student: str, notebook: str, key: str) -> Verdict | None:
        path = self.path(assignment, student, notebook)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("key") != key or data.get("verdict", {}).get("version") != VERSION:
            return None
        return Verdict.from_json(data["verdict"])

    def save(self, assignment: str, student: str, notebook: str, key: str, verdict: Verdict) -> None:
        path = self.path(assignment, student, notebook)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "verdict": verdict.to_json()}))
        os.replace(tmp, path)


def limits_from_env(gpu: bool = False) -> Limits:
    env = os.environ
    return Limits(
        cell_timeout=float(env.get("DIFFUSION_INTERNALS_CELL_TIMEOUT", 300)),
        notebook_timeout=float(env.get("DIFFUSION_INTERNALS_NOTEBOOK_TIMEOUT", 1800)),
        memory=int(float(env.get("DIFFUSION_INTERNALS_GRADING_MEMORY_GB", 8)) * 2**30),
        processes=int(env.get("DIFFUSION_INTERNALS_GRADING_PROCESSES", 256)),
        threads=int(env.get("DIFFUSION_INTERNALS_GRADING_THREADS", 1)),
        gpu=gpu or env.get("DIFFUSION_INTERNALS_GRADING_GPU") == "1",
    )


class SandboxedExecute(NbGraderPreprocessor):
    """nbgrader's Execute step, done by the trusted grader (see the module docstring)."""

    verdicts = Unicode("", help="folder of the verdicts computed by scripts/autograde.py ('' = .grading/verdicts)").tag(
        config=True
    )
    unsafe = Bool(False, help="run student code without the sandbox (the report says so)").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        limits = limits_from_env()
        sandboxed = not (self.unsafe or os.environ.get(UNSAFE_ENV) == "1")
        key = verdict_key(nb, limits, sandboxed)
        store = VerdictStore(Path(self.verdicts or os.environ.get("DIFFUSION_INTERNALS_VERDICTS", ".grading/verdicts")))
        verdict = store.load(info["assignment"], info["student"], info["notebook"], key)
        if verdict is None:
            self.log.info("Grading %s/%s/%s in the sandbox", info["student"], info["assignment"], info["notebook"])
            verdict = grade_notebook(copy.deepcopy(nb), limits, sandboxed=sandboxed)
            store.save(info["assignment"], info["student"], info["notebook"], key, verdict)
        apply_verdict(nb, verdict)
        return nb, resources


def apply_verdict(nb, verdict: Verdict) -> None:
    """Write the verdict's outputs into the notebook's code cells (test cells: their results)."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = copy.deepcopy(verdict.outputs.get(index, []))
        for output in cell.outputs:
            if output.get("output_type") == "display_data":
                output.setdefault("metadata", {})
        from nbformat import from_dict

        cell.outputs = [from_dict(o) for o in cell.outputs]
        cell.execution_count = index + 1 if index in verdict.outputs else None
        result = verdict.tests.get(meta(cell).get("grade_id")) if meta(cell).get("grade") else None
        if meta(cell).get("grade") and not meta(cell).get("solution") and (result is None or not result["passed"]):
            if not any(
                o.output_type == "error" for o in cell.outputs
            ):  # nbgrader scores a test without an error as passed
                why = result["message"] if result else "this test did not run (see the grading report)"
                cell.outputs.append(from_dict(error_output("GradingError", why)))
    nb.metadata["diffusion_internals_grading"] = {
        "status": verdict.status,
        "reason": verdict.reason,
        "events": verdict.events,
    }


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback: test cells show their visible part and the results, not the hidden tests' source."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "code" and meta(cell).get("grade"):
                ClearHiddenTests()._remove_hidden_test_region(cell)
        return nb, resources
