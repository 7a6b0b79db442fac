"""Assignment 05 (classifier-free guidance): its hidden tests give and take the right points.

The source notebook (solutions with their hidden tests, as nbgrader's autograde restores them) runs
once in one kernel, with the tiny settings the course's tests use (DIFFUSION_INTERNALS_QUICK=1):
every graded cell must pass. Then the mistakes a teaching assistant sees most replace one solution
cell each, the graded cells run again, and the test checks which graded cells fail (so how many
points are lost: one cell each, since every test cell grades one function on the package's
reference inputs, with the course's functions passed in where it needs another section's) and that
the feedback names the mistake.
The generic pipeline (release in sync, full marks and zero through nbgrader itself, feedback pages)
is tests/course/test_nbgrader.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import nbformat
import pytest
from support import ROOT

NOTEBOOK = ROOT / "solutions" / "05_guidance" / "guidance.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Variant:
    """A wrong solution cell, the graded cells it must fail (and a phrase of the feedback), provided cells to re-run."""

    cell: str
    source: str
    fails: dict[str, str]
    rerun: tuple[str, ...] = ()


_CFG_W = """
def cfg(uncond, cond, guidance_scale):
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if uncond.shape != cond.shape:
        raise ValueError("uncond and cond must have the same shape")
    return cond + guidance_scale * (cond - uncond)  # the paper's w used as the scale: every scale shifted by one
"""

_RESCALE_BATCH_STD = """
def rescale_cfg(guided, cond, phi=0.7):
    if not 0 <= phi <= 1:
        raise ValueError(f"phi must be in [0, 1], got {phi}")
    if guided.shape != cond.shape:
        raise ValueError("guided and cond must have the same shape")
    rescaled = guided * (cond.std() / guided.std())  # one std over the whole batch
    return phi * rescaled + (1 - phi) * guided
"""

_THRESHOLD = """
def dynamic_threshold(x0, percentile=0.995, max_value=1.0):
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    if not max_value >= 1:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    flat = x0.reshape(x0.shape[0], -1)
    s = {s}
    return (flat.clamp(-s, s) / s).reshape(x0.shape)
"""

_GUIDED_WRONG_ORDER = """
class GuidedDenoiser:
    def __init__(
        self,
        denoiser,
        guidance_scale,
        null_label,
        rescale=0.0,
        threshold=None,
        max_value=1.0,
        *,
        cfg=cfg,
        rescale_cfg=rescale_cfg,
        dynamic_threshold=dynamic_threshold,
    ):
        self.denoiser, self.guidance_scale, self.null_label = denoiser, guidance_scale, null_label
        self.rescale, self.threshold, self.max_value = rescale, threshold, max_value
        self.cfg, self.rescale_cfg, self.dynamic_threshold = cfg, rescale_cfg, dynamic_threshold

    @torch.no_grad()
    def __call__(self, x, sigma, class_labels):
        uncond = self.denoiser(x, sigma, class_labels=torch.full_like(class_labels, self.null_label))
        cond = self.denoiser(x, sigma, class_labels=class_labels)
        guided = self.cfg(uncond, cond, self.guidance_scale)
        if self.threshold is not None:  # thresholding first, then rescale: the wrong order
            guided = self.dynamic_threshold(guided, self.threshold, self.max_value)
        if self.rescale > 0:
            guided = self.rescale_cfg(guided, cond, self.rescale)
        return guided
"""

_RULE_ARGMIN = """
def choose_scale(rows, min_accuracy=0.95, fid_slack=0.1):
    eligible = [row for row in rows if row["accuracy"] >= min_accuracy]
    if not eligible:
        raise ValueError("no row reaches the accuracy")
    return float(min(eligible, key=lambda row: row["fid"])["scale"])  # the lowest FID, no slack
"""

_SWEEP_NEW_NOISE = """
def guidance_sweep(denoiser, null_label, scales, labels, *, steps=20, seed=0, guided=GuidedDenoiser):
    rows = []
    for i, scale in enumerate(scales):
        samples = draw(guided(denoiser, scale, null_label), labels, steps=steps, seed=seed + i)  # new noise per scale
        rows.append({"scale": scale, **score(samples, labels)})
    return rows
"""

VARIANTS = {
    "rescale with one std over the batch": Variant(
        "rescale", _RESCALE_BATCH_STD, {"test_rescale": "std is per sample"}
    ),
    "thresholding without s >= 1": Variant(
        "threshold",
        _THRESHOLD.replace("{s}", "torch.quantile(flat.abs(), percentile, dim=1).clamp(max=max_value)[:, None]"),
        {"test_threshold": "at least 1"},
    ),
    "thresholding with one s for the batch": Variant(
        "threshold",
        _THRESHOLD.replace("{s}", "torch.quantile(flat.abs().flatten(), percentile).clamp(1.0, max_value)"),
        {"test_threshold": "computed per sample"},
    ),
    "guided denoiser thresholding before rescaling": Variant(
        "guided", _GUIDED_WRONG_ORDER, {"test_guided": "rescale=0.5, threshold=0.95"}
    ),
    "choosing the lowest FID without the slack": Variant(
        "rule", _RULE_ARGMIN, {"test_rule": "within 10 % of the best FID"}
    ),
    # Not counted twice: the guided denoiser's and the sweep's tests pass the course's cfg in.
    "CFG with the paper's w as the scale": Variant("cfg", _CFG_W, {"test_cfg": "paper's w"}),
    "a sweep with new noise at every scale": Variant(
        "sweep", _SWEEP_NEW_NOISE, {"test_sweep": "the same noise at every scale"}
    ),
}


def grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def is_graded(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("grade"))


@pytest.fixture(scope="module")
def graded_runs(tmp_path_factory):
    """{run: {graded cell: None if it passed, else its error}} for the solution and each wrong variant."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = {grade_id(c): c for c in nb.cells if grade_id(c)}
    graded = [grade_id(c) for c in nb.cells if is_graded(c)]
    workdir = tmp_path_factory.mktemp("assignment_05")
    client = NotebookClient(
        nb,
        kernel_name=os.environ.get("DIFFUSION_INTERNALS_KERNEL", "diffusion-internals-grading"),
        timeout=300,
        resources={"metadata": {"path": str(workdir)}},
    )
    saved = os.environ.get("DIFFUSION_INTERNALS_QUICK")
    os.environ["DIFFUSION_INTERNALS_QUICK"] = "1"  # the kernel inherits it: the notebook's tiny settings

    def run(source: str) -> str | None:
        cell = nbformat.v4.new_code_cell(source)
        try:
            client.execute_cell(cell, 0)
        except CellExecutionError as error:
            return ANSI.sub("", f"{error.ename}: {error.evalue}")
        return None

    def grade() -> dict[str, str | None]:
        return {name: run(cells[name].source) for name in graded}

    results = {}
    try:
        with client.setup_kernel():
            solution = {}
            for cell in nb.cells:
                if cell.cell_type == "code":
                    error = run(cell.source)
                    if is_graded(cell):
                        solution[grade_id(cell)] = error
                    else:
                        assert error is None, f"the solution's cell {grade_id(cell)!r} failed: {error}"
            results["solution"] = solution
            for name, variant in VARIANTS.items():
                assert run(variant.source) is None, f"{name}: the variant's own cell failed to run"
                for cell in variant.rerun:
                    run(cells[cell].source)  # may fail: the graded cells do not read what provided cells compute
                results[name] = grade()
                assert run(cells[variant.cell].source) is None  # back to the solution for the next variant
                for cell in variant.rerun:
                    run(cells[cell].source)
    finally:
        if saved is None:
            os.environ.pop("DIFFUSION_INTERNALS_QUICK", None)
        else:
            os.environ["DIFFUSION_INTERNALS_QUICK"] = saved
    points = {grade_id(c): c.metadata["nbgrader"]["points"] for c in nb.cells if is_graded(c)}
    return results, points


def test_the_assignment_is_worth_at_least_12_points_in_at_least_6_graded_cells(graded_runs):
    _, points = graded_runs
    assert len(points) >= 6 and sum(points.values()) >= 12, points


def test_the_solution_passes_every_graded_cell(graded_runs):
    results, _ = graded_runs
    failing = {name: error for name, error in results["solution"].items() if error}
    assert not failing, f"the reference solution fails: {failing}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_wrong_implementation_loses_exactly_the_points_of_its_cells(graded_runs, variant):
    results, points = graded_runs
    failing = {name for name, error in results[variant].items() if error}
    expected = set(VARIANTS[variant].fails)
    assert failing == expected, (
        f"{variant}: expected to fail {sorted(expected)} ({sum(points[n] for n in expected)} points), "
        f"failed {sorted(failing)}: {results[variant]}"
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_feedback_names_the_mistake(graded_runs, variant):
    results, _ = graded_runs
    for cell, phrase in VARIANTS[variant].fails.items():
        error = results[variant][cell] or ""
        assert phrase in error, f"{variant}: the feedback of {cell} should say {phrase!r}; it says: {error}"
