"""Grade one notebook: the student's cells run in a sandbox, the tests run here and decide.

`grade_notebook(nb, limits)` takes a notebook whose locked cells are the instructor's (nbgrader has
put them back from the gradebook: the set-up cell and the test cells with their hidden tests) and
returns a verdict: every cell's outputs, and each test cell's result and message.

* The student's process (`runner`, in `sandbox`) runs every code cell except the test cells, in
  notebook order, like a kernel.
* This process runs the set-up cell once, then each test cell at its place in the notebook, in a
  namespace of its own: the set-up cell's names, plus each name the test reads that the set-up does
  not define, fetched from the student's process (a function or class becomes a proxy whose calls
  go over the wire; data comes back as a copy). Expected values are computed here, so nothing the
  student's code redefines (check_close, torch, the package) can make a check pass.
* Time: a cell past `cell_timeout` is interrupted; one that ignores the interrupt is run again once
  with twice the time in a fresh process, then skipped with a message. A process that dies (out of
  memory, os._exit) is restarted and the cells before are replayed, without the one that killed it.
  Past `notebook_timeout` the verdict is an error with its reason, never a quiet zero.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

import nbformat

from diffusion_internals.course.grading import GradingError, wire
from diffusion_internals.course.grading.sandbox import Cgroup, Limits, command

__all__ = ["VERSION", "StudentError", "Verdict", "grade_notebook", "test_names", "is_test_cell"]

VERSION = 1  # of the verdict's format and the rules that make it; part of the cache key
INTERRUPT_GRACE = 10.0
REFERENCE = re.compile(r"diffusion[\W_]*internals", re.IGNORECASE)


class StudentError(GradingError):
    """The student's code raised, timed out, or its process ended while a test called it."""


class Broken(BaseException):
    """The student's process is gone or broke the protocol.

    A BaseException, so that a test's `except Exception` lets it through to the harness.
    """


class Timeout(BaseException):
    """The time allowed for the current cell ran out."""


def meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and bool(meta(cell).get("grade")) and not meta(cell).get("solution")


def _python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def test_names(source: str, defined: set[str]) -> set[str]:
    """Names a test cell reads that neither it nor `defined` (the set-up's names, builtins) binds."""
    tree = ast.parse(_python(source))
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound - defined - set(dir(builtins))


# --- the student's process ------------------------------------------------------------------------


class StudentObject:
    """Stands for a function, class or object in the student's process; calling it calls it there."""

    def __init__(self, process: StudentProcess, handle: wire.Handle) -> None:
        self._process, self._handle = process, handle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._process.request({"op": "call", "target": self._handle.id}, [list(args), kwargs])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._process.request({"op": "getattr", "target": self._handle.id, "name": name})

    def __repr__(self) -> str:
        return f"<your {self._handle.description}>"


def runner_argv(limits: Limits, read_fd: int, write_fd: int) -> list[str]:
    """The runner's command line; on a GPU no address-space limit (CUDA needs a large one): the cgroup limits memory."""
    memory = "0" if limits.gpu else str(limits.memory)
    return [sys.executable, "-m", "diffusion_internals.course.grading.runner", str(read_fd), str(write_fd), memory]


class StudentProcess:
    """The runner in its sandbox, and the channel to it."""

    def __init__(self, limits: Limits, *, sandboxed: bool = True) -> None:
        self.limits = limits
        to_runner_r, self._to_runner = os.pipe()
        self._from_runner, from_runner_w = os.pipe()
        argv = runner_argv(limits, to_runner_r, from_runner_w)
        self.cgroup = Cgroup(limits.memory, limits.processes) if sandboxed else None
        cmd = command(limits, argv) if sandboxed else argv
        env = dict(os.environ, DIFFUSION_INTERNALS_GRADING="1", MPLBACKEND="agg")
        if self.cgroup:  # join the cgroup before bubblewrap starts, so every process of the submission is in it
            env["DI_CGROUP_PROCS"] = " ".join(self.cgroup.procs_files)
            cmd = [
                "/bin/sh",
                "-c",
                'for f in $DI_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"',
                "sh",
                *cmd,
            ]
        self.process = subprocess.Popen(
            cmd,
            pass_fds=(to_runner_r, from_runner_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        os.close(to_runner_r)
        os.close(from_runner_w)
        self.console = bytearray()  # the last bytes the process wrote to its own stdout and stderr
        threading.Thread(target=self._drain, daemon=True).start()
        self.objects: dict[int, Any] = {}
        self.seq = 0
        self.deadline = time.monotonic() + 120
        self.alive = True
        self._expect("ready")

    def _drain(self) -> None:
        while chunk := self.process.stdout.read1(65536):
            self.console += chunk
            del self.console[:-20000]

    # reading with a deadline
    def read(self, n: int) -> bytes:
        chunks = []
        while n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            ready, _, _ = select.select([self._from_runner], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self._from_runner, min(n, 1 << 20))
            if not chunk:
                raise Broken(self.why_dead())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._to_runner, view) :]
        except (BrokenPipeError, OSError) as error:
            raise Broken(self.why_dead()) from error

    def flush(self) -> None:
        pass

    def why_dead(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the notebook's process stopped answering"
        if self.cgroup and self.cgroup.out_of_memory():
            gib = self.limits.memory / 2**30
            return f"the notebook's processes were killed for using more than {gib:g} GiB of memory together"
        tail = self.console.decode(errors="replace").strip().splitlines()[-3:]
        return f"the notebook's process ended (exit status {code})" + (f": {' / '.join(tail)[-300:]}" if tail else "")

    def _export(self, obj: Any) -> wire.Handle:
        if isinstance(obj, StudentObject):
            return wire.Handle(obj._handle.id, "return", "")
        self.objects[id(obj)] = obj
        return wire.Handle(id(obj), "callable" if callable(obj) else "object", type(obj).__name__)

    def _resolve(self, handle: wire.Handle) -> Any:
        if handle.kind == "return":
            if handle.id not in self.objects:
                raise wire.WireError("a reference to an object the grader never sent")
            return self.objects[handle.id]
        return StudentObject(self, handle)

    def send(self, header: dict, value: Any = None) -> None:
        buffers: list[bytes] = []
        if value is not None:
            header = {**header, "args": wire.encode(value, buffers, self._export)}
        wire.send(self, header, buffers)

    def receive(self) -> tuple[dict, list[bytes]]:
        try:
            return wire.receive(self, max_bytes=min(wire.MAX_FRAME_BYTES, 4 * self.limits.output + 64 * 2**20))
        except (wire.WireError, EOFError, ValueError, KeyError) as error:
            raise Broken(f"the notebook broke the grading channel ({error})") from error

    def _expect(self, op: str) -> dict:
        header, _ = self.receive()
        if header.get("op") != op:
            raise Broken(f"expected {op!r} from the notebook's process, got {header.get('op')!r}")
        return header

    def request(self, header: dict, value: Any = None) -> Any:
        """Send a request; serve the student's calls back into our objects until its answer comes.

        Answers carry the request's number: one for an earlier request (a frame the student's code
        forged, or the late answer to an interrupted cell) is skipped; an answer of the wrong kind
        breaks the channel (the process is restarted), it never reaches the test.
        """
        self.seq += 1
        seq = self.seq
        self.send({**header, "seq": seq}, value)
        expected = ("done",) if header["op"] == "exec" else ("value", "raise")
        while True:
            reply, buffers = self.receive()
            op = reply.get("op")
            if op in ("call", "getattr"):
                self._serve_callback(reply, buffers)
                continue
            if reply.get("seq") != seq:
                continue
            if op not in expected:
                raise Broken(f"the notebook's process answered {op!r} to {header['op']!r}")
            if op == "done":
                return reply
            if op == "raise":
                raise _student_exception(reply)
            try:
                return wire.decode(reply.get("value"), buffers, self._resolve)
            except wire.WireError as error:
                raise StudentError(f"your code returned a value the grader cannot read: {error}") from error

    def _serve_callback(self, request: dict, buffers: list[bytes]) -> None:
        """The student's code calls one of the objects we passed it (a reference denoiser, say)."""
        try:
            target = self.objects.get(request.get("target"))
            if target is None:
                raise wire.WireError("no such object")
            args, kwargs = wire.decode(request.get("args"), buffers, self._resolve)
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise wire.WireError("malformed arguments")
            if request["op"] == "call":
                result, export = target(*args, **kwargs), self._export_result
            else:
                name = request.get("name")
                if not isinstance(name, str) or name.startswith("_"):
                    raise AttributeError(f"the grader's objects do not show {name!r}")
                result, export = getattr(target, name), self._export_attribute
                if callable(result):
                    raise AttributeError(f"the grader's {type(target).__name__} can be called, not its method {name!r}")
            out: list[bytes] = []
            data = wire.encode(result, out, export)
            wire.send(self, {"op": "value", "cb": request.get("cb"), "value": data}, out)
        except (Timeout, Broken):
            raise
        except Exception as error:  # what the student's call did wrong goes back to the student's code
            wire.send(
                self,
                {"op": "raise", "cb": request.get("cb"), "ename": type(error).__name__, "evalue": str(error)[:500]},
            )

    def _export_result(self, obj: Any) -> wire.Handle:
        """What calling one of our objects gave (a guided denoiser from a class we passed, say): the student's
        code may hold it and call it. Modules never leave the grader."""
        if isinstance(obj, StudentObject):
            return self._export(obj)
        if isinstance(obj, types.ModuleType):
            raise TypeError("the grader's object gave a module, which the grader does not hand out")
        return self._export(obj)

    def _export_attribute(self, obj: Any) -> wire.Handle:
        """What reading an attribute of our objects gave: data to read (a model's config), never something new to
        call (a method, a submodule, a class, a module's functions): those stay with the grader."""
        if callable(obj) or isinstance(obj, types.ModuleType):
            raise TypeError(f"the grader's object gave a {type(obj).__name__}, which the grader does not hand out")
        return self._export_result(obj)

    def interrupt(self) -> None:
        try:
            wire.send(self, {"op": "interrupt"})
        except Broken:
            pass

    def close(self) -> None:
        """End the process and everything it started; a clean exit first, so its CPU time is accounted."""
        if self.alive:
            with contextlib.suppress(Broken, OSError, ValueError, subprocess.TimeoutExpired):
                wire.send(self, {"op": "shutdown"})
                self.process.wait(timeout=2)
        self.alive = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(timeout=10)
        if self.cgroup:
            self.cgroup.kill_and_remove()
        for fd in (self._to_runner, self._from_runner):
            with contextlib.suppress(OSError):
                os.close(fd)


def _student_exception(reply: dict) -> StudentError:
    """A StudentError that is also of the builtin type the student's code raised (a test may expect a ValueError)."""
    message, ename = _student_error(reply), str(reply.get("ename", ""))
    builtin = getattr(builtins, ename, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception) and not issubclass(builtin, StudentError):
        try:
            return type(ename, (StudentError, builtin), {"__str__": lambda self: message})(message)
        except TypeError:  # a builtin whose layout cannot be combined (OSError, say): the plain StudentError
            pass
    return StudentError(message)


def _student_error(reply: dict) -> str:
    ename, evalue = str(reply.get("ename", "Exception"))[:100], str(reply.get("evalue", ""))[:1000]
    lines = [
        line
        for line in str(reply.get("traceback", "")).splitlines()
        if "diffusion_internals/course/grading" not in line
    ]
    where = next((line.strip() for line in reversed(lines) if line.strip().startswith('File "<ipython-input')), "")
    cell = re.search(r"<ipython-input-(\d+)-", where)
    at = f" (in your cell {int(cell.group(1))}, {where.split(',', 2)[-1].strip()})" if cell else ""
    return f"your code raised {ename}: {evalue}{at}"


# --- the verdict ------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What grading a notebook found: per cell outputs, per test its result, and what went wrong."""

    status: str = "graded"  # or "error": the notebook could not be graded completely; `reason` says why
    reason: str | None = None
    outputs: dict[int, list] = field(default_factory=dict)  # cell index -> nbformat outputs
    tests: dict[str, dict] = field(default_factory=dict)  # grade_id -> {"passed": bool, "message": str}
    events: list[str] = field(default_factory=list)  # timeouts, restarts, skipped cells
    reference_use: dict = field(default_factory=dict)  # {"cells": [...], "imports": [...], "calls": {...}}
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"version": VERSION, **self.__dict__, "outputs": {str(k): v for k, v in self.outputs.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        fields = {k: v for k, v in data.items() if k != "version"}
        fields["outputs"] = {int(k): v for k, v in fields.get("outputs", {}).items()}
        return cls(**fields)


def error_output(ename: str, message: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": message, "traceback": [f"{ename}: {message}"]}


def _clean(out: Any) -> dict | None:
    """An output the student's process sent, rebuilt from checked fields (nbformat must accept it), or None."""
    if not isinstance(out, dict):
        return None
    kind = out.get("output_type")
    if kind == "stream" and out.get("name") in ("stdout", "stderr") and isinstance(out.get("text"), str):
        return {"output_type": "stream", "name": out["name"], "text": out["text"]}
    if kind == "display_data" and isinstance(out.get("data"), dict):
        data = {
            k: v for k, v in out["data"].items() if k in ("text/plain", "image/png", "text/html") and isinstance(v, str)
        }
        return {"output_type": "display_data", "data": data, "metadata": {}} if data else None
    if kind == "error":
        traceback = out.get("traceback")
        if not isinstance(traceback, list) or not all(isinstance(line, str) for line in traceback):
            traceback = []
        return {
            "output_type": "error",
            "ename": str(out.get("ename", "Error"))[:200],
            "evalue": str(out.get("evalue", ""))[:4000],
            "traceback": traceback[-30:],
        }
    return None


def _cap_outputs(outputs: Any, budget: list[int]) -> list:
    """Checked outputs within the notebook's byte budget (budget[0], decremented); errors always kept."""
    kept = []
    for out in outputs if isinstance(outputs, list) else []:
        out = _clean(out)
        if out is None:
            continue
        size = len(str(out))
        if out["output_type"] == "error" or size <= budget[0]:
            budget[0] -= min(size, budget[0])
            kept.append(out)
        elif out["output_type"] == "stream" and budget[0] > 1000:
            text = out["text"][: budget[0] - 200] + "\n[output cut: the notebook's output is over the grader's limit]"
            kept.append({**out, "text": text})
            budget[0] = 0
        else:
            cut = "[output cut: the notebook's output is over the grader's limit]\n"
            kept.append({"output_type": "stream", "name": "stderr", "text": cut})
    return kept


# --- grading ----------------------------------------------------------------------------------------


class _Run:
    def __init__(self, nb: nbformat.NotebookNode, limits: Limits, sandboxed: bool) -> None:
        self.nb, self.limits, self.sandboxed = nb, limits, sandboxed
        self.verdict = Verdict()
        self.process: StudentProcess | None = None
        self.done: list[tuple[int, str, bool]] = []  # cells the student's process has run (for a replay)
        self.skipped: set[int] = set()
        self.end = time.monotonic() + limits.notebook_timeout
        self.budget = [limits.output]
        self.setup: dict[str, Any] = {"__name__": "__grader__"}

    def student_process(self) -> StudentProcess:
        if self.process is None or not self.process.alive:
            self.process = StudentProcess(self.limits, sandboxed=self.sandboxed)
            for index, source, student in self.done:  # replay what ran before, without the cells that had to be skipped
                if index not in self.skipped:
                    self.process.deadline = min(self.end, time.monotonic() + 2 * self.limits.cell_timeout)
                    self.process.request({"op": "exec", "source": source, "number": index + 1, "student": student})
        return self.process

    def restart(self) -> None:
        if self.process is not None:
            self.process.close()
        self.process = None

    def run_cell(self, index: int, cell: dict) -> None:
        student = not meta(cell).get("locked", False)
        timeout = self.limits.cell_timeout
        for attempt in (1, 2):
            try:
                process = self.student_process()
                process.deadline = min(self.end, time.monotonic() + timeout)
                try:
                    reply = process.request(
                        {"op": "exec", "source": cell["source"], "number": index + 1, "student": student}
                    )
                except Timeout:
                    if time.monotonic() >= self.end:
                        raise
                    process.interrupt()
                    process.deadline = time.monotonic() + INTERRUPT_GRACE
                    reply = _await_done(process)
                    outputs = reply.get("outputs")
                    reply["outputs"] = [
                        *(outputs if isinstance(outputs, list) else []),
                        error_output("Timeout", f"this cell did not finish in {timeout:g} s and was interrupted"),
                    ]
                    self.verdict.events.append(f"cell {index + 1}: interrupted after {timeout:g} s")
                self.verdict.outputs[index] = _cap_outputs(reply.get("outputs", []), self.budget)
                self.done.append((index, cell["source"], student))
                return
            except Timeout:
                self.restart()
                if time.monotonic() >= self.end:
                    raise
                if attempt == 1:
                    self.verdict.events.append(
                        f"cell {index + 1}: ignored the interrupt after {timeout:g} s; run again with {2 * timeout:g} s"
                    )
                    timeout *= 2
                    continue
                message = (
                    f"this cell did not finish in {timeout:g} s (twice, ignoring interrupts); "
                    "it was skipped and grading went on"
                )
            except (Broken, StudentError) as error:
                self.restart()
                message = f"{error}; grading went on without this cell"
            self.skipped.add(index)
            self.verdict.outputs[index] = [error_output("GradingError", message)]
            self.verdict.events.append(f"cell {index + 1}: {message}")
            return

    def run_setup(self, cell: dict) -> None:
        exec(compile(_python(cell["source"]), "<set-up cell>", "exec"), self.setup)

    def run_test(self, index: int, cell: dict) -> None:
        grade_id = meta(cell).get("grade_id", f"cell {index + 1}")
        namespace = dict(self.setup)
        missing = set()
        printed = io.StringIO()
        try:
            code = compile(_python(cell["source"]), f"<test {grade_id}>", "exec")
            process = self.student_process()
            process.deadline = min(self.end, time.monotonic() + self.limits.cell_timeout)
            for name in sorted(test_names(cell["source"], set(self.setup))):
                try:
                    namespace[name] = process.request({"op": "get", "name": name})
                except StudentError:
                    missing.add(name)
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
            result = {"passed": True, "message": ""}
        except (AssertionError, GradingError) as error:  # a failed check, or the student's code raised (StudentError)
            result = {"passed": False, "message": str(error) or "a check failed"}
        except NameError as error:  # raised by the test itself: a name the student's process does not have
            name = getattr(error, "name", None)
            if name in missing:
                message = (
                    f"`{name}` is not defined in your notebook: did the cell that defines it run without errors? "
                    "(see its output)"
                )
            else:
                message = f"the test could not run: {error} (a grader error: tell your instructor)"
            result = {"passed": False, "message": message}
        except Timeout:
            self.restart()
            if time.monotonic() >= self.end:
                raise
            result = {
                "passed": False,
                "message": f"your code did not finish within the {self.limits.cell_timeout:g} s this test allows",
            }
        except Broken as error:
            self.restart()
            result = {"passed": False, "message": f"{error} while this test called your code"}
        except Exception as error:  # whatever else the test met: a learner's value of the wrong kind, say
            result = {"passed": False, "message": f"{type(error).__name__}: {error}"}
        self.verdict.tests[grade_id] = result
        outputs = (
            [{"output_type": "stream", "name": "stdout", "text": printed.getvalue()}] if printed.getvalue() else []
        )
        if not result["passed"]:
            outputs.append(error_output("GradingError", result["message"]))
        self.verdict.outputs[index] = _cap_outputs(outputs, self.budget)

    def grade(self) -> Verdict:
        start = time.monotonic()
        cells = [(i, c) for i, c in enumerate(self.nb.cells) if c.get("cell_type") == "code"]
        try:
            for _, cell in cells:
                if meta(cell).get("grade_id") == "setup" and meta(cell).get("locked"):
                    self.run_setup(cell)
                    break
            self.verdict.reference_use["cells"] = [
                i + 1 for i, c in cells if not meta(c).get("locked") and REFERENCE.search(c.get("source", ""))
            ]
            for index, cell in cells:
                if time.monotonic() >= self.end:
                    raise Timeout()
                if is_test_cell(cell):
                    self.run_test(index, cell)
                else:
                    self.run_cell(index, cell)
            with contextlib.suppress(Broken, Timeout, StudentError):
                process = self.student_process()
                process.deadline = time.monotonic() + 30
                report = process.request({"op": "report"})
                self.verdict.reference_use.update(_checked_report(report))
        except Exception as error:  # a fault of the grader itself: reported, never a quiet zero
            self.verdict.status = "error"
            self.verdict.reason = (
                f"the grader failed on this notebook ({type(error).__name__}: {error}); tell the course team"
            )
        except Timeout:
            self.verdict.status = "error"
            self.verdict.reason = (
                f"the notebook did not finish in the {self.limits.notebook_timeout:g} s allowed for a whole notebook; "
                "the tests after that point did not run"
            )
        finally:
            self.restart()
            self.verdict.seconds = round(time.monotonic() - start, 2)
        for index, cell in cells:  # a test that did not run fails with the reason: no output would mean full marks
            if is_test_cell(cell) and meta(cell).get("grade_id") not in self.verdict.tests:
                reason = self.verdict.reason or "this test did not run"
                self.verdict.tests[meta(cell).get("grade_id")] = {"passed": False, "message": reason}
                self.verdict.outputs[index] = [error_output("GradingError", reason)]
        return self.verdict


def _checked_report(report: Any) -> dict:
    """The runner's record of reference use, keeping only well-formed entries (the student's process wrote it)."""
    report = report if isinstance(report, dict) else {}
    imports, calls = report.get("imports"), report.get("calls")
    imports = [
        [item[0], item[1][:200]]
        for item in (imports if isinstance(imports, list) else [])
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str)
    ]
    calls = {
        k[:200]: v
        for k, v in (calls if isinstance(calls, dict) else {}).items()
        if isinstance(k, str) and isinstance(v, int)
    }
    return {"imports": imports[:50], "calls": dict(list(calls.items())[:50])}


def _await_done(process: StudentProcess) -> dict:
    """After an interrupt: the cell's answer (its KeyboardInterrupt), or Timeout if it never comes."""
    while True:
        reply, buffers = process.receive()
        if reply.get("op") == "done" and reply.get("seq") == process.seq:
            return reply
        if reply.get("op") in ("call", "getattr"):
            process._serve_callback(reply, buffers)


def grade_notebook(nb: nbformat.NotebookNode, limits: Limits | None = None, *, sandboxed: bool = True) -> Verdict:
    """Run nb's cells in a sandboxed student process and its test cells here; see the module docstring."""
    return _Run(nb, limits or Limits(), sandboxed).grade()
