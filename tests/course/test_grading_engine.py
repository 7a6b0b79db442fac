"""The trusted grader's parts: the wire's strict decoding, the harness's verdicts, the sandbox's refusal.

The hostile-submission suite (test_hostile_submissions.py) attacks the whole pipeline; these tests pin
down each part on tiny notebooks: a test passes only when the value computed in the grader's process
matches, whatever the student's process redefines; callbacks into the grader's objects work; a cell
past its time, a process that dies and a name that is missing each end in a message, never a crash.
"""

from __future__ import annotations

import io
import math
import struct
import sys

import nbformat
import numpy as np
import pytest
import torch
from support import requires_sandbox

from diffusion_internals.course.grading import wire
from diffusion_internals.course.grading.harness import grade_notebook
from diffusion_internals.course.grading.sandbox import Limits

SETUP = "import torch\nfrom diffusion_internals.course.grading import check_close, check_equal"


def _roundtrip(value):
    buffers: list[bytes] = []
    data = wire.encode(value, buffers, lambda obj: wire.Handle(7, "function", "f"))
    return wire.decode(data, buffers, lambda handle: ("handle", handle.id))


@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool]
)
def test_tensors_cross_with_their_dtype_shape_and_values(dtype):
    x = (torch.arange(12, dtype=torch.float64).reshape(3, 4) - 5).to(dtype)
    got = _roundtrip(x)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == x.shape
    assert torch.equal(got, x)


def test_plain_values_cross_unchanged_and_objects_become_handles():
    value = {"a": [1, 2.5, None, True], ("k", 3): (np.arange(3.0), np.float32(1.5)), "big": 2**80, "nan": math.nan}
    got = _roundtrip(value)
    assert got["a"] == [1, 2.5, None, True] and got["big"] == 2**80 and math.isnan(got["nan"])
    array, scalar = got[("k", 3)]
    assert np.array_equal(array, np.arange(3.0)) and scalar == np.float32(1.5) and scalar.dtype == np.float32
    assert _roundtrip(print) == ("handle", 7)


@pytest.mark.parametrize(
    "data, buffers, message",
    [
        (["pickle", "x"], [], "unknown value tag"),
        (["tensor", "object", [1], 0], [b"12345678"], "not allowed"),
        (["tensor", "float64", [2], 0], [b"12345678"], "cannot have 8 bytes"),
        (["ndarray", "float64", [1], 3], [b"12345678"], "buffer that was not sent"),
        ({"op": 1}, [], "malformed value"),
    ],
)
def test_decoding_refuses_what_the_student_side_must_not_send(data, buffers, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode(data, buffers, lambda handle: None)


def test_frames_over_the_limit_or_not_json_are_refused():
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.receive(io.BytesIO(struct.pack(">I", 10**9)), max_bytes=2**20)
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.receive(io.BytesIO(struct.pack(">I", 3) + b"{{{"))
    nested: list = []
    for _ in range(100):
        nested = ["list", [nested]]
    with pytest.raises(wire.WireError, match="nested"):
        wire.decode(nested, [], lambda handle: None)


def notebook(solution: str, test: str, *extra: tuple[str, str]) -> nbformat.NotebookNode:
    """setup (locked), one solution cell, one test cell worth 1 point, then extra (kind, source) cells."""
    nb = nbformat.v4.new_notebook()
    cells = [("setup", SETUP), ("solution", solution), ("test", test), *extra]
    for number, (kind, source) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source)
        grade_id = "setup" if kind == "setup" else f"{kind}_{number}"
        info = {"grade_id": grade_id, "locked": kind in ("setup", "test"), "solution": kind == "solution"}
        info["grade"] = kind == "test"
        if kind == "test":
            info["points"] = 1
        cell.metadata["nbgrader"] = info
        nb.cells.append(cell)
    return nb


FAST = Limits(cell_timeout=20, notebook_timeout=120)
TWICE = "def twice(x):\n    return 2 * x"
TEST_TWICE = (
    'check_close("twice(ones)", twice(torch.ones(3, dtype=torch.float64)), torch.full((3,), 2.0, dtype=torch.float64))'
)


@pytest.mark.slow
@pytest.mark.parametrize("sandboxed", [pytest.param(True, marks=requires_sandbox()), False])
def test_a_correct_function_passes_and_a_wrong_one_fails_with_the_checks_message(sandboxed):
    passed = grade_notebook(notebook(TWICE, TEST_TWICE), FAST, sandboxed=sandboxed)
    assert passed.status == "graded" and passed.tests["test_2"] == {"passed": True, "message": ""}
    wrong = grade_notebook(notebook("def twice(x):\n    return 3 * x", TEST_TWICE), FAST, sandboxed=sandboxed)
    assert not wrong.tests["test_2"]["passed"]
    assert "twice(ones): 3 of 3 value(s) differ from the reference" in wrong.tests["test_2"]["message"]
    assert wrong.outputs[2][-1]["output_type"] == "error"  # nbgrader scores the test cell 0 from this


@pytest.mark.slow
def test_nothing_redefined_in_the_students_process_makes_a_wrong_answer_pass():
    forged = (
        "import torch, diffusion_internals.course.grading as g\n"
        "check_close = check_equal = g.check_close = lambda *a, **k: None\n"
        "torch.allclose = lambda *a, **k: True\n"
        "class AlwaysEqual(float):\n    def __eq__(self, other): return True\n"
        "def twice(x):\n    return 3 * x"
    )
    verdict = grade_notebook(notebook(forged, TEST_TWICE), FAST, sandboxed=False)
    assert not verdict.tests["test_2"]["passed"]


@pytest.mark.slow
def test_the_students_code_calls_back_into_the_graders_objects():
    solution = "def apply(f, x):\n    return f(x) + 1"
    test = 'check_close("apply", apply(lambda x: x * 10, torch.tensor([1.0, 2.0])), torch.tensor([11.0, 21.0]))'
    assert grade_notebook(notebook(solution, test), FAST, sandboxed=False).tests["test_2"]["passed"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "solution, message",
    [
        ("def twice(x):\n    raise ValueError('not yet')", "your code raised ValueError: not yet"),
        ("def twice(x):\n    return object()", "expected a tensor or a number"),
        ("x = 1", "`twice` is not defined in your notebook"),
        # the student's own NameError (a typo, a helper from a cell that failed) is theirs, not the grader's
        ("def twice(x):\n    return helper(x)", "your code raised NameError: name 'helper' is not defined"),
        ("def twice(x):\n    import os\n    os._exit(3)", "ended (exit status 3)"),
    ],
)
def test_what_goes_wrong_in_the_students_code_is_said_in_the_feedback(solution, message):
    verdict = grade_notebook(notebook(solution, TEST_TWICE), FAST, sandboxed=False)
    assert not verdict.tests["test_2"]["passed"]
    assert message in verdict.tests["test_2"]["message"]
    assert "grader error" not in verdict.tests["test_2"]["message"]


@pytest.mark.slow
def test_a_cell_past_its_time_is_interrupted_and_the_notebook_goes_on():
    limits = Limits(cell_timeout=8, notebook_timeout=120)  # the set-up cell (torch) must fit, even on a busy machine
    nb = notebook(
        "import time\nwhile True:\n    time.sleep(0.01)",
        "check_equal('one', 1, 1)",
        ("solution", TWICE),
        ("test", TEST_TWICE),
    )
    verdict = grade_notebook(nb, limits, sandboxed=False)
    assert verdict.status == "graded"
    assert "did not finish in 8 s and was interrupted" in str(verdict.outputs[1])
    assert verdict.tests["test_4"]["passed"]


@pytest.mark.slow
def test_a_process_that_dies_is_restarted_and_the_later_cells_are_still_graded():
    nb = notebook("import os\nos._exit(1)", "check_equal('one', 1, 1)", ("solution", TWICE), ("test", TEST_TWICE))
    verdict = grade_notebook(nb, FAST, sandboxed=False)
    assert "grading went on without this cell" in str(verdict.outputs[1])
    assert verdict.tests["test_4"]["passed"]


@pytest.mark.slow
def test_a_notebook_past_its_total_time_is_an_error_with_its_reason_not_a_quiet_zero():
    limits = Limits(cell_timeout=30, notebook_timeout=3)
    verdict = grade_notebook(notebook("import time\ntime.sleep(10)", TEST_TWICE), limits, sandboxed=False)
    assert verdict.status == "error" and "did not finish in the 3 s" in verdict.reason
    assert verdict.tests["test_2"]["message"] == verdict.reason


@pytest.mark.slow
def test_reference_use_is_recorded_whatever_the_spelling():
    solution = (
        "_m = __import__('diffusion' + '_internals.schedules', fromlist=['x'])\n"
        "def twice(x):\n    _m.make_betas('linear', num_steps=3)\n    return 2 * x"
    )
    verdict = grade_notebook(notebook(solution, TEST_TWICE), FAST, sandboxed=False)
    use = verdict.reference_use
    assert use["imports"] and use["calls"] == {"diffusion_internals.schedules.make_betas": 1}
    assert verdict.tests["test_2"]["passed"]  # graded as submitted; the report flags it


def test_autograde_refuses_to_run_without_the_sandbox_unless_told(tmp_path, monkeypatch, capsys):
    import importlib.util

    from support import ROOT

    from diffusion_internals.course.grading import sandbox

    spec = importlib.util.spec_from_file_location("autograde_script", ROOT / "scripts" / "autograde.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "autograde_script", script)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    (tmp_path / "submitted").mkdir()
    assert script.main(["--course", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "refuses to run student code without its sandbox" in out and "apt-get install -y bubblewrap" in out
    assert "UNSAFE=1" in out


def test_limits_refuse_nonsense():
    with pytest.raises(ValueError, match="Limits.memory must be positive"):
        Limits(memory=0)


def test_the_gpu_sandbox_binds_the_devices_and_leaves_memory_to_the_cgroup(monkeypatch):
    from diffusion_internals.course.grading import harness, sandbox

    monkeypatch.setattr(sandbox, "gpu_devices", lambda: ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"])
    gpu, cpu = Limits(gpu=True), Limits()
    cmd = sandbox.command(gpu, ["python"])
    binds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--dev-bind"]
    assert binds == ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"]
    assert "--dev-bind" not in sandbox.command(cpu, ["python"])
    assert "--unshare-all" in cmd and "--die-with-parent" in cmd  # no network, own process tree, as on the CPU
    assert harness.runner_argv(gpu, 3, 4)[-1] == "0"  # no RLIMIT_AS on the GPU
    assert harness.runner_argv(cpu, 3, 4)[-1] == str(cpu.memory)


def test_the_sandbox_shows_the_environment_read_only_and_nothing_of_the_course():
    from support import ROOT

    from diffusion_internals.course.grading import sandbox

    cmd = sandbox.command(Limits(), ["python"])
    read_only = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--ro-bind"}
    assert not any(arg in ("--bind", "--dev-bind") for arg in cmd)  # nothing of the host is writable
    assert str(ROOT) not in read_only and str(ROOT / "solutions") not in read_only
    assert str(ROOT / "src" / "diffusion_internals") in read_only  # the package (editable install), alone


def test_the_sandbox_keeps_the_graders_pythonpath_read_only(monkeypatch, tmp_path):
    # The GPU check installs its wheelhouse into a folder on PYTHONPATH: the student's process must import from it.
    import sys

    from diffusion_internals.course.grading import sandbox

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    cmd = sandbox.command(Limits(), ["python"])
    settings = {cmd[i + 1]: cmd[i + 2] for i, arg in enumerate(cmd) if arg == "--setenv"}
    assert settings["PYTHONPATH"] == str(site)
    assert str(site) in {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--ro-bind"}
    monkeypatch.delenv("PYTHONPATH")
    assert "PYTHONPATH" not in sandbox.command(Limits(), ["python"])


def test_every_name_a_test_cell_reads_is_the_set_ups_or_a_graded_answer():
    """The trusted process has only the set-up cell's names and the learner's answers (harness rules)."""
    import ast
    import builtins

    from IPython.core.inputtransformer2 import TransformerManager
    from support import ROOT

    from diffusion_internals.course.grading.harness import is_test_cell, meta, test_names

    def top_level(source: str) -> set[str]:
        names = set()
        for node in ast.parse(TransformerManager().transform_cell(source)).body:
            for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [node]:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(sub.name)
                elif isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
                    names.add(sub.id)
                elif isinstance(sub, ast.alias):
                    names.add((sub.asname or sub.name).split(".")[0])
        return names

    problems = []
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        setup = set().union(*[top_level(c.source) for c in cells if meta(c).get("grade_id") == "setup"])
        answers = set().union(
            *[top_level(c.source) for c in cells if c.cell_type == "code" and meta(c).get("solution")]
        )
        for cell in filter(is_test_cell, cells):
            stray = test_names(cell.source, setup | set(dir(builtins))) - answers
            if stray:
                problems.append(f"{path.parent.name}/{meta(cell)['grade_id']}: {sorted(stray)}")
    assert not problems, "test cells read names the grader's process does not have:\n" + "\n".join(problems)


@pytest.mark.slow
def test_frames_forged_by_the_students_code_gain_nothing_and_break_nothing():
    """The student's code writes answers of every kind, for every request number, to the grader's channel."""
    forge = (
        "import json, os, struct, sys\n"
        "def _frame(header):\n"
        "    text = json.dumps({**header, 'buffers': []}).encode()\n"
        "    os.write(int(sys.argv[2]), struct.pack('>I', len(text)) + text)\n"
        "for _seq in range(1, 40):\n"
        "    _frame({'op': 'value', 'seq': _seq, 'value': ['tensor', 'float64', [3], 0]})\n"
        "    _frame({'op': 'done', 'seq': _seq, 'outputs': 7, 'ok': True})\n"
        "    _frame({'op': 'value', 'seq': _seq, 'value': 2.0})\n"
        "def twice(x):\n    return 3 * x"
    )
    nb = notebook(forge, TEST_TWICE, ("solution", "y = 1"), ("test", "check_equal('one', 1, 1)"))
    verdict = grade_notebook(nb, FAST, sandboxed=False)
    assert not verdict.tests["test_2"]["passed"]
    assert verdict.tests["test_4"]["passed"]  # later cells are still graded
    assert all(isinstance(outputs, list) for outputs in verdict.outputs.values())


@pytest.mark.slow
def test_a_test_can_expect_the_students_exception_type_and_read_a_graders_object():
    """`except ValueError` in a test catches the student's ValueError; the student's code may read a model's config."""
    solution = (
        "def check_scale(s):\n    if s < 0:\n        raise ValueError('negative scale')\n    return s\n"
        "def classes(model):\n    return model.config.num_classes + 0"
    )
    test = (
        "import types\n"
        "try:\n    check_scale(-1)\nexcept ValueError as error:\n    assert 'negative scale' in str(error)\n"
        "else:\n    raise AssertionError('no ValueError')\n"
        "class Model:\n    config = types.SimpleNamespace(num_classes=10)\n"
        "    def __call__(self, x):\n        return x\n"
        "check_equal('classes(model)', classes(Model()), 10)"
    )
    verdict = grade_notebook(notebook(solution, test), FAST, sandboxed=False)
    assert verdict.tests["test_2"] == {"passed": True, "message": ""}
