"""The submission's side of grading: runs the student's cells, then answers the grader's calls.

Started by the grader inside the sandbox (`python -m diffusion_internals.course.grading.runner
READ_FD WRITE_FD`); nothing here is trusted. It executes the cells it is sent in one IPython shell
(as a kernel would, magics included), returns their outputs, and then serves the grader's requests
over the wire: look up a name, call a handle (a student's function, class or object), read an
attribute. Objects the grader passes in (a reference denoiser, a reference sampler) arrive as
proxies whose calls go back to the grader's process.

It also records, for the instructor's report, where the submission touches the reference package:
imports of `diffusion_internals` made while a student-written cell runs (an audit hook and the
import function, so any spelling of the name counts), and calls of the package's functions made
directly from student code while the grader calls it. A student can defeat this recording (see the
instructor guide); it cannot change a grade, which is decided in the grader's process.
"""

from __future__ import annotations

import builtins
import io
import os
import queue
import sys
import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from diffusion_internals.course.grading import wire

PACKAGE_DIR = str(Path(__file__).resolve().parents[2])  # src/diffusion_internals
GRADING_DIR = str(Path(__file__).resolve().parent)  # the grader's own helpers are not the reference
OUTPUT_LIMIT = 100_000  # characters of output kept per cell (the grader caps again on its side)


class TrustedProxy:
    """Stands for an object in the grader's process: calling it asks the grader to call the original."""

    def __init__(self, server: Server, handle: wire.Handle) -> None:
        self._server, self._handle = server, handle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._server.callback({"op": "call", "target": self._handle.id}, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._server.callback({"op": "getattr", "target": self._handle.id, "name": name}, (), {})

    def __repr__(self) -> str:
        return f"<grader's {self._handle.description}>"


class Server:
    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.inbox: queue.Queue = queue.Queue()
        self.out = os.fdopen(write_fd, "wb", buffering=0)
        self.reader = os.fdopen(read_fd, "rb", buffering=0)
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}
        self.student_files: set[str] = set()
        self.current_cell_is_student = False
        self.imports: list[list] = []
        self.calls: Counter = Counter()
        self.shell = None
        self.seq = None  # the number of the grader's request being answered, echoed in the answer
        self.callbacks = 0
        self.current_number = 0
        threading.Thread(target=self._read, daemon=True).start()

    # --- the channel ---------------------------------------------------------------------------
    def _read(self) -> None:
        import _thread

        while True:
            try:
                header, buffers = wire.receive(self.reader)
            except (EOFError, wire.WireError, OSError):
                os._exit(0)  # the grader is gone: nothing is left to do
            if header.get("op") == "interrupt":
                _thread.interrupt_main()
            else:
                self.inbox.put((header, buffers))

    def _export(self, obj: Any) -> wire.Handle:
        if isinstance(obj, TrustedProxy):
            return wire.Handle(obj._handle.id, "return", "")
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = len(self.objects) + 1
            self.objects[self.ids[key]] = obj
        kind = "class" if isinstance(obj, type) else "function" if callable(obj) else "object"
        name = getattr(obj, "__name__", type(obj).__name__)
        return wire.Handle(self.ids[key], kind, f"{kind} {name}")

    def _resolve(self, handle: wire.Handle) -> Any:
        if handle.kind == "return":
            if handle.id not in self.objects:
                raise wire.WireError(f"unknown object {handle.id}")
            return self.objects[handle.id]
        return TrustedProxy(self, handle)

    def send_value(self, op: str, value: Any) -> None:
        buffers: list[bytes] = []
        try:
            data = wire.encode(value, buffers, self._export)
        except Exception as error:  # a value that cannot cross is an error of the student's function
            self.send_error(error)
            return
        wire.send(self.out, {"op": op, "seq": self.seq, "value": data}, buffers)

    def send_error(self, error: BaseException) -> None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-8))
        wire.send(
            self.out,
            {
                "op": "raise",
                "seq": self.seq,
                "ename": type(error).__name__,
                "evalue": str(error)[:2000],
                "traceback": text[-8000:],
            },
        )

    def decode(self, data: Any, buffers: list[bytes]) -> Any:
        return wire.decode(data, buffers, self._resolve)

    def callback(self, request: dict, args: tuple, kwargs: dict) -> Any:
        """Ask the grader to call or read one of its objects; serve its requests until it answers."""
        buffers: list[bytes] = []
        payload = wire.encode([list(args), kwargs], buffers, self._export)
        self.callbacks += 1
        number = self.callbacks
        wire.send(self.out, {**request, "cb": number, "args": payload}, buffers)
        while True:
            header, buffers = self.inbox.get()
            op = header.get("op")
            if op in ("value", "raise") and header.get("cb") != number:
                continue  # an answer to another call (stale): not ours
            if op == "value":
                return self.decode(header["value"], buffers)
            if op == "raise":
                raise RuntimeError(f"the grader's object raised {header.get('ename')}: {header.get('evalue')}")
            self.handle(header, buffers)

    # --- requests --------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            header, buffers = self.inbox.get()
            if header.get("op") == "shutdown":
                return
            self.handle(header, buffers)

    def handle(self, header: dict, buffers: list[bytes]) -> None:
        op = header.get("op")
        outer, self.seq = self.seq, header.get("seq")
        try:
            if op == "exec":
                done = self.execute(header["source"], header["number"], header["student"])
                wire.send(self.out, {"op": "done", "seq": self.seq, **done})
            elif op == "get":
                namespace = self.shell.user_ns
                if header["name"] not in namespace:
                    raise NameError(header["name"])
                self.send_value("value", namespace[header["name"]])
            elif op == "call":
                args, kwargs = self.decode(header["args"], buffers)
                target = self.objects[header["target"]]
                self.send_value("value", self.traced(target, args, kwargs))
            elif op == "getattr":
                self.send_value("value", getattr(self.objects[header["target"]], header["name"]))
            elif op == "report":
                self.send_value("value", {"imports": self.imports, "calls": dict(self.calls)})
            else:
                raise wire.WireError(f"unknown request {op!r}")
        except BaseException as error:  # the student's exception (or an interrupt) goes back to the grader
            self.send_error(error)
        finally:
            self.seq = outer

    # --- running student code ------------------------------------------------------------------
    def traced(self, target: Any, args: list, kwargs: dict) -> Any:
        """Call target, recording calls of the reference package made directly from student code."""

        def profile(frame, event, arg):
            filename = frame.f_code.co_filename
            if event == "call" and filename.startswith(PACKAGE_DIR) and not filename.startswith(GRADING_DIR):
                caller = frame.f_back
                if caller is not None and caller.f_code.co_filename in self.student_files:
                    module = frame.f_globals.get("__name__", "?")
                    self.calls[f"{module}.{frame.f_code.co_qualname}"] += 1

        sys.setprofile(profile)
        try:
            return target(*args, **kwargs)
        finally:
            sys.setprofile(None)

    def execute(self, source: str, number: int, student: bool) -> dict:
        from IPython.utils.capture import capture_output

        shell = self.shell
        shell.execution_count = self.current_number = number
        errors: list[dict] = []
        shell._showtraceback = lambda etype, evalue, stb: errors.append(
            {"output_type": "error", "ename": etype.__name__, "evalue": str(evalue)[:2000], "traceback": _plain(stb)}
        )
        self.current_cell_is_student = student
        try:
            with capture_output() as captured:
                shell.run_cell(source, store_history=True)
        finally:
            self.current_cell_is_student = False
        for filename, count in getattr(shell.compile, "_filename_map", {}).items():
            if count == number and student:
                self.student_files.add(filename)
        outputs = []
        for name, text in (("stdout", captured.stdout), ("stderr", captured.stderr)):
            if text:
                cut = text[:OUTPUT_LIMIT] + (
                    f"\n[... {len(text) - OUTPUT_LIMIT} characters cut]" if len(text) > OUTPUT_LIMIT else ""
                )
                outputs.append({"output_type": "stream", "name": name, "text": cut})
        for item in captured.outputs[:20]:
            data = {k: v for k, v in item.data.items() if k in ("text/plain", "image/png", "text/html")}
            outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
        outputs += _figures()
        return {"outputs": outputs + errors[:1], "ok": not errors}

    def audit(self, event: str, args: tuple) -> None:
        if event == "import" and self.current_cell_is_student and str(args[0]).startswith("diffusion_internals"):
            self.imports.append([self.current_number, str(args[0])])


def _plain(stb: list[str]) -> list[str]:
    import re

    return [re.sub(r"\x1b\[[0-9;]*m", "", line)[:4000] for line in stb[-20:]]


def _figures() -> list[dict]:
    """Open matplotlib figures as PNG outputs (what the inline backend shows), then closed."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    import base64

    plt = sys.modules["matplotlib.pyplot"]
    outputs = []
    for number in plt.get_fignums()[:10]:
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png", dpi=60, bbox_inches="tight")
        png = base64.b64encode(buffer.getvalue()).decode()
        outputs.append(
            {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": {}}
        )
    plt.close("all")
    return outputs


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    read_fd, write_fd, memory = int(argv[0]), int(argv[1]), int(argv[2])
    if memory > 0:  # one allocation past the limit fails in its cell; the cgroup bounds all processes together
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    os.environ.setdefault("MPLBACKEND", "agg")
    server = Server(read_fd, write_fd)
    sys.addaudithook(server.audit)
    original_import = builtins.__import__

    def recording_import(name, *args, **kwargs):
        if server.current_cell_is_student and name.startswith("diffusion_internals"):
            server.imports.append([server.current_number, name])
        return original_import(name, *args, **kwargs)

    builtins.__import__ = recording_import
    from IPython.core.interactiveshell import InteractiveShell

    server.shell = InteractiveShell.instance(colors="nocolor")
    wire.send(server.out, {"op": "ready"})
    server.serve()
    os._exit(0)  # daemon threads and student threads end with the process


if __name__ == "__main__":
    main()
