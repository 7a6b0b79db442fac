"""The CI workflows call the README's Make targets, and those targets exist.

GitHub Actions cannot run here; these checks keep the workflow files honest: valid YAML, the
triggers the README promises, and commands that are Make targets of this repository.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from support import ROOT, course_env

WORKFLOWS = ROOT / ".github" / "workflows"
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def commands(workflow: dict) -> list[str]:
    """The shell commands of every step; a step that runs .ci/run counts with what .ci/run runs."""
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    return runs + [(ROOT / ".ci" / "run").read_text() for run in runs if ".ci/run" in run]


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
    # Pull requests run the CI entry point itself, in Debian, where it installs Chromium and bubblewrap.
    pull_request = load("pull-request.yml")
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in pull_request["jobs"]["test"]["steps"])
    assert "bookworm" in pull_request["jobs"]["test"]["container"]["image"]
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


def test_the_release_workflow_publishes_what_make_dist_built_on_a_version_tag():
    """On a tag v*: the tag must be v + pyproject's version, `make dist` builds, PyPI by trusted publishing."""
    workflow = load("release.yml")
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads 'on' as True
    assert on == {"push": {"tags": ["v*"]}}
    jobs = workflow["jobs"]
    build = [step.get("run", "") for step in jobs["build"]["steps"]]
    check = next(i for i, run in enumerate(build) if "pyproject.toml" in run and "GITHUB_REF_NAME" in run)
    dist = next(i for i, run in enumerate(build) if re.search(r"\bmake dist\b", run))
    assert check < dist, "the tag is checked against the version before anything is built"
    uploaded = [s["with"]["path"] for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload")]
    assert uploaded == ["dist/"], "the build job hands dist/ (make dist) to the publishing jobs"

    # The version check itself, run as the workflow runs it: the right tag passes, any other fails and says why.
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    for tag, ok in [(f"v{version}", True), (f"v{version}.post1", False), (version, False), ("v0.0.1", False)]:
        env = {**course_env(), "GITHUB_REF_NAME": tag}
        result = subprocess.run(["bash", "-ec", build[check]], cwd=ROOT, env=env, capture_output=True, text=True)
        assert (result.returncode == 0) == ok, f"tag {tag!r} with version {version}: {result.stdout}{result.stderr}"
        if not ok:
            assert f"is not v{version}" in result.stdout

    pypi = jobs["pypi"]
    assert pypi["needs"] == "build" and pypi["environment"]["name"] == "pypi"
    assert pypi["permissions"] == {"id-token": "write"}, "trusted publishing: an OIDC token, no API token, nothing else"
    uses = [step.get("uses", "") for step in pypi["steps"]]
    assert uses[-1].startswith("pypa/gh-action-pypi-publish@") and "password" not in pypi["steps"][-1].get("with", {})
    downloaded = [s["with"] for s in pypi["steps"] if s.get("uses", "").startswith("actions/download-artifact")]
    assert downloaded == [{"name": "dist", "path": "dist/"}]

    release = jobs["github-release"]
    assert release["needs"] == "pypi" and release["permissions"] == {"contents": "write"}
    publish = release["steps"][-1]["run"]
    assert "gh release create" in publish and "dist/*" in publish and "--verify-tag" in publish
    assert jobs["build"]["permissions"] == {"contents": "read"} and workflow["permissions"] == {"contents": "read"}
