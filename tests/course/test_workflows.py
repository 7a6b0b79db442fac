"""The CI workflows call the README's Make targets, and those targets exist.

GitHub Actions cannot run here; these checks keep the workflow files honest: valid YAML, the
triggers the README promises, and commands that are Make targets of this repository.
"""

from __future__ import annotations

import re

import pytest
import yaml
from support import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def commands(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_workflow_runs_make_targets_that_exist(name):
    runs = " ".join(commands(load(name)))
    used = set(re.findall(r"\bmake ([a-z][a-z-]*)", runs))
    assert used, f"{name} runs no make target"
    assert used <= TARGETS, f"{name} calls unknown make targets {used - TARGETS}"


def test_triggers_match_what_the_readme_and_the_issue_promise():
    on = lambda name: load(name)[True] if True in load(name) else load(name)["on"]  # noqa: E731 (YAML 1.1 reads 'on' as True)
    assert on("book.yml")["push"]["branches"] == ["main"]
    assert "pull_request" in on("pull-request.yml")
    assert "schedule" in on("links.yml") and "schedule" in on("drift.yml")
    assert "make test" in " ".join(commands(load("pull-request.yml")))
    assert "CONSTRAINTS=requirements/drift.txt" in " ".join(commands(load("drift.yml")))
    assert not [
        line
        for line in (ROOT / "requirements" / "drift.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ], "the drift guard must pin nothing"


def test_the_pages_workflow_publishes_the_notebooks_that_colab_opens():
    """`make notebooks` runs after the build, and one job with `contents: write` pushes them to the Colab branch."""
    workflow = load("book.yml")
    jobs = workflow["jobs"]
    build = [step.get("run", "") for step in jobs["build"]["steps"]]
    strict = next(i for i, run in enumerate(build) if "make book-strict" in run)
    export = next(i for i, run in enumerate(build) if "make notebooks" in run)
    assert export > strict, "the notebooks are exported after the book build"
    uploaded = [
        step["with"]["path"]
        for step in jobs["build"]["steps"]
        if step.get("uses", "").startswith("actions/upload-artifact")
    ]
    assert uploaded == ["_build/notebooks"], "the build job hands _build/notebooks (make notebooks) to the push job"

    branch = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["launch_paths_notebooks_branch"]
    push = jobs["notebooks"]
    script = " ".join(step.get("run", "") for step in push["steps"])
    assert f"HEAD:{branch}" in script and "--force" in script, f"the job must replace the {branch!r} branch"
    assert "GITHUB_TOKEN" in script and push["steps"][-1]["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert push["needs"] == "build" and "refs/heads/main" in push["if"]

    # Least privilege: only the push job writes contents, only the deploy job writes Pages.
    assert push["permissions"] == {"contents": "write"}
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert jobs["build"]["permissions"] == {"contents": "read"}
    assert workflow["permissions"] == {"contents": "read"}
