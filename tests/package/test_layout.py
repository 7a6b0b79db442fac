"""The package's layout rules (issue 18), read from the source with `ast`, imports inside functions included.

1. The core (the modules at the top of src/diffusion_internals/ and samplers/) never imports
   `diffusion_internals.course` or `diffusion_internals.sd`; `sd` never imports `course`.
2. Nothing imports a private name (`_x`) from another module of the package: not the package's own
   modules, nor benchmarks/, scripts/, book/_ext/ or tests/.
3. No `sys.path` edits (`sys.path.insert/append/extend`, assignments to `sys.path`, `site.addsitedir`) in
   benchmarks/, scripts/, book/_ext/ or tests/: they are made importable instead (pyproject.toml's pytest
   `pythonpath`, the Makefile).
4. No import cycles among the package's modules (relative imports and `from . import x` included).

Every failure names the file, the line and the rule.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ROOT

PACKAGE = "diffusion_internals"
SRC = ROOT / "src"
PACKAGE_DIR = SRC / PACKAGE
LAYERS = (f"{PACKAGE}.course", f"{PACKAGE}.sd")
OUTSIDE = ("benchmarks", "scripts", "book/_ext", "tests")  # code around the package, checked for rules 2 and 3


@dataclass(frozen=True)
class Import:
    """One imported module (and, for `from m import n`, one name) at a line of a file."""

    path: Path
    line: int
    module: str  # absolute, relative imports resolved
    name: str | None  # `n` of `from module import n`; None for `import module`
    asname: str | None = None  # `as y`

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def target(self, modules: set[str]) -> str:
        """The module this import runs: `module.name` when that is a module (`from . import x`), else `module`."""
        if self.name is not None and f"{self.module}.{self.name}" in modules:
            return f"{self.module}.{self.name}"
        return self.module


def module_name(path: Path) -> str:
    """`src/diffusion_internals/samplers/karras.py` -> `diffusion_internals.samplers.karras` (__init__: the package)."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_files() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def outside_files() -> list[Path]:
    return sorted(p for folder in OUTSIDE for p in (ROOT / folder).rglob("*.py"))


def nodes(path: Path) -> list[ast.AST]:
    """Every statement and expression of a file, in the order of the source."""
    return _nodes(path.read_text(encoding="utf8"))


@functools.cache
def _nodes(text: str) -> list[ast.AST]:
    tree = ast.parse(text)
    return sorted((n for n in ast.walk(tree) if hasattr(n, "lineno")), key=lambda n: (n.lineno, n.col_offset))


def imports(path: Path) -> Iterator[Import]:
    """Every import of a file, at any depth (functions, `if TYPE_CHECKING:`), relative ones made absolute."""
    inside = path.is_relative_to(PACKAGE_DIR)
    package = ""  # the package that a relative import starts from
    if inside:
        package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in nodes(path):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, None, alias.asname)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not inside:  # a relative import outside the package (tests are not a package): not ours
                    continue
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                yield Import(path, node.lineno, module, alias.name, alias.asname)


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(f"{prefix}.")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer(module: str) -> str:
    """`course`, `sd` or `core`."""
    return next((prefix.rpartition(".")[2] for prefix in LAYERS if within(module, prefix)), "core")


def layer_violations(files: list[Path]) -> list[str]:
    """Rule 1: the core imports neither course nor sd; sd does not import course."""
    forbidden = {"core": LAYERS, "sd": (f"{PACKAGE}.course",), "course": ()}
    found = []
    for path in files:
        own = layer(module_name(path))
        for imp in imports(path):
            full = f"{imp.module}.{imp.name}" if imp.name else imp.module
            hit = next((f for f in forbidden[own] if within(imp.module, f) or within(full, f)), None)
            if hit:
                found.append(f"{imp.where}: the {own} layer imports {full} (rule: {layer_rule(own)})")
    return found


def layer_rule(own: str) -> str:
    return "the core never imports course or sd" if own == "core" else "sd never imports course"


def dotted(node: ast.AST) -> str | None:
    """`a.b.c` of a chain of attributes on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def private_attribute_uses(path: Path, modules: set[str]) -> list[tuple[int, str, str]]:
    """(line, name, module) where a private name is read off an imported module of the package (`forward._at`)."""
    bound = {}  # local name -> the module of the package it is bound to
    for imp in imports(path):
        if imp.name is None:  # `import a.b` binds a, `import a.b as c` binds c to a.b
            local, module = (imp.asname, imp.module) if imp.asname else (imp.module.partition(".")[0],) * 2
        else:  # `from a import b [as c]` binds b (or c), a module only when a.b is one
            local, module = imp.asname or imp.name, imp.target(modules)
            if module == imp.module:
                continue
        if within(module, PACKAGE):
            bound[local] = module
    found = []
    for node in nodes(path):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            base = dotted(node.value)
            head, _, rest = (base or "").partition(".")
            if head in bound:
                module = ".".join(filter(None, (bound[head], rest)))
                if module in modules:
                    found.append((node.lineno, node.attr, module))
    return found


def private_violations(files: list[Path]) -> list[str]:
    """Rule 2: no private name of the package imported by another module (`from m import _x`, `import m._x`),
    nor read off an imported module (`forward._at`)."""
    modules = {module_name(p) for p in package_files()}
    found = []
    for path in files:
        for line, name, module in private_attribute_uses(path, modules):
            found.append(
                f"{path.relative_to(ROOT)}:{line}: uses the private name {name} of {module} "
                "(rule: nothing imports a private name from another module)"
            )
        for imp in imports(path):
            if not within(imp.module, PACKAGE):
                continue
            private = [p for p in imp.module.split(".") if is_private(p)]
            if imp.name is not None and is_private(imp.name):
                private.append(imp.name)
            if private:
                what = f"{imp.name} from {imp.module}" if imp.name else imp.module
                found.append(
                    f"{imp.where}: imports the private name {private[0]} ({what}) "
                    "(rule: nothing imports a private name from another module)"
                )
    return found


def sys_path_violations(files: list[Path]) -> list[str]:
    """Rule 3: no `sys.path` edits or `site.addsitedir`."""

    def is_sys_path(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        )

    found = []
    for path in files:
        for node in nodes(path):
            edit = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if is_sys_path(node.func.value) and node.func.attr in ("insert", "append", "extend"):
                    edit = f"sys.path.{node.func.attr}"
                elif node.func.attr == "addsitedir":
                    edit = "site.addsitedir"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "addsitedir":
                edit = "addsitedir"
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)):
                        edit = "an assignment to sys.path"
            if edit:
                found.append(
                    f"{path.relative_to(ROOT)}:{node.lineno}: {edit} "
                    "(rule: no sys.path edits; make the module importable instead)"
                )
    return found


def import_graph(files: list[Path]) -> dict[str, dict[str, Import]]:
    """module -> {imported module of the package: the first import of it}, for the package's own modules."""
    modules = {module_name(p) for p in files}
    graph: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for path in files:
        for imp in imports(path):
            target = imp.target(modules)
            if target in modules and target != module_name(path):
                graph[module_name(path)].setdefault(target, imp)
    return graph


def find_cycle(graph: dict[str, dict[str, Import]]) -> list[Import] | None:
    """The imports along one cycle of the graph (depth-first search), or None."""
    state: dict[str, str] = {}  # "open" while on the stack, "done" after
    stack: list[Import] = []

    def visit(module: str) -> list[Import] | None:
        state[module] = "open"
        for target, imp in sorted(graph[module].items()):
            if state.get(target) == "open":
                start = next(i for i, s in enumerate(stack) if module_name(s.path) == target)
                return [*stack[start:], imp]
            if target not in state:
                stack.append(imp)
                cycle = visit(target)
                if cycle:
                    return cycle
                stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def describe_cycle(cycle: list[Import]) -> str:
    modules = {module_name(p) for p in package_files()}
    steps = [f"{module_name(imp.path)} ({imp.where}) imports {imp.target(modules)}" for imp in cycle]
    return "import cycle (rule: no import cycles among the package's modules):\n  " + "\n  ".join(steps)


# ---- the rules, on the real tree ----------------------------------------------------------------------------


def test_the_files_are_found():
    files = package_files()
    assert PACKAGE_DIR / "__init__.py" in files and PACKAGE_DIR / "course" / "__init__.py" in files
    assert {layer(module_name(p)) for p in files} == {"core", "course", "sd"}
    assert any(p.name == "launch_paths.py" for p in outside_files())
    graph = import_graph(files)  # relative and absolute imports both make edges
    assert f"{PACKAGE}.forward" in graph[f"{PACKAGE}.reverse"]
    assert f"{PACKAGE}.schedules" in graph[f"{PACKAGE}.sampling"]


def test_the_core_never_imports_course_or_sd_and_sd_never_imports_course():
    found = layer_violations(package_files())
    assert not found, "\n".join(found)


def test_no_private_name_is_imported_from_another_module():
    found = private_violations(package_files() + outside_files())
    assert not found, "\n".join(found)


def test_no_sys_path_edits_in_benchmarks_scripts_book_extension_or_tests():
    found = sys_path_violations(outside_files())
    assert not found, "\n".join(found)


def test_no_import_cycles():
    cycle = find_cycle(import_graph(package_files()))
    if cycle is not None:
        pytest.fail(describe_cycle(cycle))


# ---- the checks themselves can fail -------------------------------------------------------------------------


@pytest.fixture
def scratch_package(tmp_path, monkeypatch):
    """A scratch copy of the package's layout (empty modules), with SRC/ROOT pointing at it."""
    root = tmp_path / "repo"
    src = root / "src"
    for path in package_files():
        target = src / path.relative_to(SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ROOT", root)
    monkeypatch.setattr(module, "SRC", src)
    monkeypatch.setattr(module, "PACKAGE_DIR", src / PACKAGE)
    return src / PACKAGE


def test_each_check_fails_on_a_broken_scratch_copy(scratch_package):
    pkg = scratch_package
    (pkg / "forward.py").write_text("def _at(a, t):\n    return a[t]\n")
    (pkg / "reverse.py").write_text("import torch\n\n\ndef f():\n    from .course import data\n")
    (pkg / "sd" / "loop.py").write_text("from diffusion_internals.course.models import UNet\n")
    (pkg / "schedules.py").write_text("from .forward import _at\n")
    (pkg / "samplers" / "karras.py").write_text("from .. import sampling\n")
    (pkg / "guidance.py").write_text("from diffusion_internals import forward as fw\n\nfw._at(1, 2)\n")
    (pkg / "denoisers.py").write_text("import diffusion_internals.forward\n\ndiffusion_internals.forward._at\n")
    (pkg / "utils.py").write_text("import diffusion_internals.samplers._private as p\n")
    (pkg / "sampling.py").write_text("import diffusion_internals.samplers.karras\n")
    files = package_files()

    assert layer_violations(files) == [
        "src/diffusion_internals/reverse.py:5: the core layer imports diffusion_internals.course.data "
        "(rule: the core never imports course or sd)",
        "src/diffusion_internals/sd/loop.py:1: the sd layer imports diffusion_internals.course.models.UNet "
        "(rule: sd never imports course)",
    ]
    rule = "(rule: nothing imports a private name from another module)"
    assert private_violations(files) == [
        f"src/diffusion_internals/denoisers.py:3: uses the private name _at of diffusion_internals.forward {rule}",
        f"src/diffusion_internals/guidance.py:3: uses the private name _at of diffusion_internals.forward {rule}",
        "src/diffusion_internals/schedules.py:1: imports the private name _at "
        f"(_at from diffusion_internals.forward) {rule}",
        "src/diffusion_internals/utils.py:1: imports the private name _private "
        f"(diffusion_internals.samplers._private) {rule}",
    ]
    cycle = find_cycle(import_graph(files))
    assert cycle is not None
    assert [(module_name(i.path), i.line) for i in cycle] in (
        [("diffusion_internals.sampling", 1), ("diffusion_internals.samplers.karras", 1)],
        [("diffusion_internals.samplers.karras", 1), ("diffusion_internals.sampling", 1)],
    )
    assert "src/diffusion_internals/samplers/karras.py:1" in describe_cycle(cycle)


def test_sys_path_check_fails_on_each_kind_of_edit(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    script = tmp_path / "scripts" / "x.py"
    script.parent.mkdir()
    script.write_text(
        "import site\nimport sys\n"
        "sys.path.insert(0, 'a')\nsys.path.append('b')\nsite.addsitedir('c')\nsys.path[:0] = ['d']\n"
        "sys.path += ['e']\nprint(sys.path)\n"
    )
    found = sys_path_violations([script])
    assert [f.split(":")[1] for f in found] == ["3", "4", "5", "6", "7"], found
    assert all(f.startswith("scripts/x.py:") and "rule: no sys.path edits" in f for f in found)
