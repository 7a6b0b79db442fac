"""Grading that loses nothing, crashes on nothing and is fooled by nothing: broken and hostile submissions.

One class of submissions for assignment 01 (tests/course/hostile.py) is graded in a temporary copy of the
course with scripts/autograde.py (the body of `make autograde`, here with two Dask workers): every case
must get its expected score, no hostile case may raise its score, touch anything outside its sandbox
(the course folder, another student's submission, the gradebook, the virtual environment, the
package's source, the host's network and processes), and the feedback or the grading report must say
what went wrong. A second run must grade nothing again and change nothing. The per-cell timeout is
15 s and the memory limit 4 GiB here, so the module takes a few minutes on 2 cores.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from hostile import ASSIGNMENT, CASES, LINEAR, NOTEBOOK, RENAMED, Maker, expected, write_submissions, write_targets
from support import BIN, ROOT, course_env, requires_sandbox, run
from traitlets.config.loader import PyFileConfigLoader

NBGRADER = [str(BIN / "python"), "-m", "nbgrader"]
CELL_TIMEOUT = 15
MEMORY_GB = 4
pytestmark = [pytest.mark.slow, requires_sandbox()]
AT_MOST = {"forged_garbage", "forged_value", "forged_done"}  # a broken channel may cost more points, never gain any


def scores(course: Path) -> dict[str, float]:
    from nbgrader.api import Gradebook

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        return {s.student.id: s.score for s in gradebook.find_assignment(ASSIGNMENT).submissions}


def autograde(course: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **course_env(),
        "DIFFUSION_INTERNALS_CELL_TIMEOUT": str(CELL_TIMEOUT),
        "DIFFUSION_INTERNALS_GRADING_MEMORY_GB": str(MEMORY_GB),
    }
    return subprocess.run(
        [str(BIN / "python"), str(ROOT / "scripts" / "autograde.py"), "--course", str(course), "--jobs", "2"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


class Listener:
    """A TCP server on the host's loopback that records every connection and byte it gets."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.connections, self.received, self.stop = 0, b"", False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    while chunk := conn.recv(65536):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.server.close()


def pgrep(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if "pgrep" not in line]


def snapshot(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("class")
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    assert run([*NBGRADER, "generate_assignment", ASSIGNMENT, "--force"], cwd=course).returncode == 0
    marker = f"hostile-{uuid.uuid4().hex[:12]}"
    listener = Listener()
    context = {"port": listener.port, "marker": marker, "sleep": f"30.{uuid.uuid4().int % 10**9:09d}"}
    source = course / "solutions" / ASSIGNMENT / NOTEBOOK
    maker = Maker(course / "exercises" / ASSIGNMENT / NOTEBOOK, source, context)
    write_submissions(maker, course / "submitted")
    targets = write_targets(maker)
    outside_before = {name: snapshot(path) for name, path in targets.items()}
    package_files = sorted(str(p) for p in targets["package"].parent.rglob("*") if "__pycache__" not in p.parts)
    submitted_before = {p: p.read_bytes() for p in (course / "submitted").rglob("*") if p.is_file()}
    started = time.monotonic()
    try:
        first = autograde(course)
    finally:
        listener.close()
    seconds = time.monotonic() - started
    first_scores = scores(course)
    feedback = run([*NBGRADER, "generate_feedback", ASSIGNMENT, "--force"], cwd=course)
    second = autograde(course)
    return {
        "course": course,
        "first": first,
        "first_scores": first_scores,
        "second": second,
        "second_scores": scores(course),
        "feedback": feedback,
        "submitted_before": submitted_before,
        "expected": expected(source),
        "listener": listener,
        "marker": marker,
        "context": context,
        "targets": targets,
        "outside_before": outside_before,
        "package_files": package_files,
        "seconds": seconds,
        "maker": maker,
    }


def feedback_text(course: Path, case: str) -> str:
    page = course / "feedback" / case / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text())) if page.is_file() else ""


def graded_outputs(course: Path, case: str) -> str:
    nb = nbformat.read(course / "autograded" / case / ASSIGNMENT / NOTEBOOK, as_version=4)
    return "\n".join(json.dumps(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")


def attention(report: str) -> str:
    return (
        report.split("## Needs your attention", 1)[1].split("\n## ", 1)[0]
        if "## Needs your attention" in report
        else ""
    )


def test_autograde_finishes_and_records_every_submission(graded):
    first = graded["first"]
    incomplete = not_graded_completely(first.stdout)
    assert not incomplete, f"not graded completely: {incomplete}\n{first.stdout[-4000:]}"
    assert first.returncode == (1 if incomplete else 0), (
        f"autograde failed:\n{first.stdout[-4000:]}\n{first.stderr[-4000:]}"
    )
    assert set(graded["first_scores"]) == set(graded["expected"]), (
        f"students missing from the gradebook: {set(graded['expected']) - set(graded['first_scores'])}"
    )
    print(f"first autograde run: {graded['seconds']:.0f} s")


@pytest.mark.parametrize("case", sorted([*CASES, RENAMED]))
def test_each_case_gets_its_expected_score(graded, case):
    score, want = graded["first_scores"][case], graded["expected"][case][0]
    if case in AT_MOST:
        assert score <= want, f"{case}: scored {score}, more than {want}: forging the channel gained points"
    else:
        assert score == want, f"{case}: scored {score}, expected {want}"


@pytest.mark.parametrize("case", sorted(c for c in [*CASES, RENAMED] if c))
def test_feedback_or_report_says_what_went_wrong(graded, case):
    phrase = graded["expected"][case][1]
    if not phrase:
        pytest.skip("nothing to say")
    report = graded["first"].stdout  # the first run's report (a second run finds the renamed notebook already copied)
    text = feedback_text(graded["course"], case)
    assert phrase in text or (phrase in report and case in report), (
        f"{case}: neither the feedback page nor the grading report says {phrase!r}"
    )


def not_graded_completely(report: str) -> set[str]:
    return set(re.findall(r"- \S+ / (\S+): NOT GRADED COMPLETELY", attention(report)))


def test_forging_the_channel_does_not_stop_grading_a_notebook(graded):
    assert not not_graded_completely(graded["first"].stdout) & {"forged_value", "forged_done"}


def test_a_second_run_grades_nothing_and_changes_nothing(graded):
    second = graded["second"]
    incomplete = not_graded_completely(graded["first"].stdout)  # what could not be graded is tried again
    assert second.returncode == (1 if incomplete else 0), second.stdout[-3000:]
    assert f"({len(incomplete)} graded now," in second.stdout, second.stdout[-3000:]
    assert graded["second_scores"] == graded["first_scores"]
    for path, content in graded["submitted_before"].items():  # the students' files are untouched (renames are copies)
        assert path.is_file() and path.read_bytes() == content, f"{path} was changed or removed"


def test_feedback_is_generated_for_every_graded_notebook_without_the_hidden_tests(graded):
    course, feedback = graded["course"], graded["feedback"]
    assert feedback.returncode == 0, feedback.stderr[-3000:]
    for case in graded["first_scores"]:
        if case == "invalid_json":
            continue
        page = course / "feedback" / case / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
        assert page.is_file(), case
        raw = page.read_text()
        assert "BEGIN HIDDEN TESTS" not in raw, f"{case}: the feedback shows the hidden tests"
        assert '_ref.make_betas("linear", num_steps=_n)' not in html.unescape(raw), (
            f"{case}: hidden test source in feedback"
        )


def test_no_false_checksum_warnings(graded):
    # nbgrader warns "Attribute 'checksum' for cell X has changed!" when a locked cell was edited: only one case did
    log = graded["first"].stdout + graded["first"].stderr
    segments = re.split(r"Autograding ", log)
    for segment in segments:
        if "'checksum'" in segment:
            owner = re.match(r"\S*submitted/([^/]+)/", segment)
            assert (owner and owner.group(1) == "edited_test_cell") or (
                not owner and all("test_linear_betas" in line for line in segment.splitlines() if "'checksum'" in line)
            ), f"a checksum warning for a submission that did not edit a locked cell:\n{segment[:1500]}"


@pytest.mark.parametrize("case", ["stdout_flood", "big_output"])
def test_a_flood_of_output_is_cut_in_the_graded_notebook_and_the_feedback(graded, case):
    course = graded["course"]
    size = (course / "autograded" / case / ASSIGNMENT / NOTEBOOK).stat().st_size
    assert size < 2_000_000, f"{case}: the autograded notebook holds {size} bytes"
    page = course / "feedback" / case / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
    assert page.stat().st_size < 2_000_000, f"{case}: the feedback page holds {page.stat().st_size} bytes"


# --- the sandbox holds -------------------------------------------------------------------------------


def test_rebinding_the_checks_in_the_notebook_changes_nothing(graded):
    text = feedback_text(graded["course"], "rebinds_helpers")
    assert "differ from the reference" in text, "the wrong linear_betas must fail its hidden test"


def test_no_solution_or_gradebook_is_visible_to_a_submission(graded):
    out = graded_outputs(graded["course"], "reads_solutions")
    assert "FOUND = []" in out and "EXECUTED = []" in out, f"the sandbox showed the submission something: {out[:2000]}"


def test_nothing_outside_the_sandbox_is_written(graded):
    out = graded_outputs(graded["course"], "writes_outside")
    assert "WROTE = []" in out, out[:2000]
    for name, path in graded["targets"].items():
        if name == "gradebook":  # nbgrader itself writes the scores there: checked for the marker below
            continue
        assert snapshot(path) == graded["outside_before"][name], f"{name}: {path} was changed or created"
    gradebook = (graded["course"] / "gradebook.db").read_bytes()
    assert graded["marker"].encode() not in gradebook and b"hacked" not in gradebook
    package = graded["targets"]["package"].parent
    assert sorted(str(p) for p in package.rglob("*") if "__pycache__" not in p.parts) == graded["package_files"]
    assert not list(graded["course"].glob(f"*{graded['marker']}*"))


def test_no_process_outlives_its_submission(graded):
    assert "DETACHED" in graded_outputs(graded["course"], "detached_process")
    assert pgrep(graded["marker"]) == [], "a process started by a submission still runs on the host"
    assert pgrep(f"sleep {graded['context']['sleep']}") == [], "the fork bomb's processes still run"


def test_the_network_is_unreachable(graded):
    listener = graded["listener"]
    assert listener.connections == 0 and listener.received == b"", (
        f"the host's listener got {listener.connections} connection(s) and {len(listener.received)} bytes"
    )
    out = graded_outputs(graded["course"], "network")
    assert "sent to" not in out, out[:2000]


def test_the_process_limit_holds(graded):
    out = graded_outputs(graded["course"], "fork_bomb")
    started = int(re.search(r"STARTED = (\d+)", out).group(1))
    assert 0 < started < 300, f"the fork bomb started {started} processes (limit: 256 with the runner's own)"


def test_the_memory_limit_holds_for_all_processes_together(graded):
    out = graded_outputs(graded["course"], "memory_spread")
    held = int(re.search(r"HELD AT ONCE = (\d+)", out).group(1))
    assert held <= 1, f"{held} children held 2 GiB at once under a {MEMORY_GB} GiB limit"


def test_a_cell_that_ignores_interrupts_is_reported_with_its_student_and_cell(graded):
    nb = nbformat.read(graded["maker"].release, as_version=4)
    cell = 1 + next(
        i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == LINEAR
    )
    section = attention(graded["first"].stdout)
    lines = [line for line in section.splitlines() if "ignores_interrupt" in line]
    assert lines and f"cell {cell}" in lines[0], (
        f"the report's 'Needs your attention' does not name the cell:\n{section}"
    )


def test_the_infinite_loop_is_reported(graded):
    assert "did not finish in" in feedback_text(graded["course"], "infinite_loop")


@pytest.mark.parametrize("case", ["uses_reference", "runtime_reference"])
def test_use_of_the_reference_package_is_flagged(graded, case):
    report = graded["first"].stdout
    assert any(case in line and "uses the reference package" in line for line in report.splitlines()), report[-3000:]
