"""Figure alt text: every code cell of the book that draws a figure gives its image an alt text.

MyST-NB sets the ``alt`` attribute of a cell's rendered ``<img>`` from the cell metadata
``mystnb: {image: {alt: ...}}`` (the cell-level form of ``nb_render_image_options``).
These tests read the book sources with MyST-NB's own reader, so they see the metadata
exactly as the build does, without executing or building anything.

Which cells draw a figure (the rule). A cell draws one when its code, outside the bodies
of the functions and classes it defines, calls

- ``plt.show``, ``plt.subplots``, ``plt.figure`` or another pyplot call that makes a figure
  (``FIGURE_CALLS``),
- ``<anything>.savefig``, or ``display(fig...)`` with a name that starts with ``fig``,
- a helper defined at the top level of a code cell of the same page, or imported by the page from
  ``diffusion_internals.course.plotting``, whose body makes a figure by those calls (``digit_rows`` in
  chapters 3 and 6, ``show_panels`` in chapter 7), or
- ends with a bare ``fig...`` expression (the notebook displays it).

A set-up cell that only defines such a helper draws nothing, so it needs no alt text.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support import ROOT

read = pytest.importorskip("myst_nb.core.read")

BOOK = ROOT / "book"
PLOTTING = ROOT / "src" / "diffusion_internals" / "course" / "plotting.py"  # the chapters' shared figure helpers
PAGES = sorted(BOOK.glob("*.md"))
MIN_ALT_LENGTH = 40
FIGURE_CALLS = {
    "show",
    "subplots",
    "figure",
    "subplot",
    "subplot_mosaic",
    "imshow",
    "matshow",
    "plot",
    "scatter",
    "hist",
    "bar",
    "contour",
    "contourf",
    "pcolormesh",
}
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def python_tree(source: str) -> ast.Module:
    """The cell's code as Python: IPython magics (``%pip``, ``!ls``, a ``%%`` first line) become ``pass``."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%"):
        lines = lines[1:]
    lines = [re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in lines]
    return ast.parse("\n".join(lines))


def executed_nodes(tree: ast.AST):
    """The nodes that run when the cell runs: everything except the bodies of functions, classes and lambdas."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, DEFINITIONS):
            stack.extend(ast.iter_child_nodes(node))


def makes_figure(call: ast.Call, helpers: set[str]) -> bool:
    """Whether one call draws a figure: a pyplot figure call, savefig, display(fig) or a figure helper of the page."""
    func = call.func
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id == "plt" and func.attr in FIGURE_CALLS:
            return True
        return func.attr == "savefig"
    if isinstance(func, ast.Name):
        if func.id == "display":
            return any(isinstance(arg, ast.Name) and arg.id.startswith("fig") for arg in call.args)
        return func.id in helpers
    return False


def figure_helpers(trees: list[ast.Module]) -> set[str]:
    """The names of the top-level functions of a page, or imported from plotting, whose body draws a figure."""
    functions = {
        node.name: node
        for tree in trees
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    imported = {
        alias.asname or alias.name: alias.name
        for tree in trees
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "diffusion_internals.course.plotting"
        for alias in node.names
    }
    shared = {node.name: node for node in ast.parse(PLOTTING.read_text()).body if isinstance(node, ast.FunctionDef)}
    functions.update({name: shared[original] for name, original in imported.items() if original in shared})
    helpers: set[str] = set()
    while True:
        found = {
            name
            for name, node in functions.items()
            if name not in helpers and any(isinstance(n, ast.Call) and makes_figure(n, helpers) for n in ast.walk(node))
        }
        if not found:
            return helpers
        helpers |= found


def draws_figure(tree: ast.Module, helpers: set[str]) -> bool:
    """The rule of the module docstring, for one cell."""
    if any(isinstance(n, ast.Call) and makes_figure(n, helpers) for n in executed_nodes(tree)):
        return True
    last = tree.body[-1] if tree.body else None
    return isinstance(last, ast.Expr) and isinstance(last.value, ast.Name) and last.value.id.startswith("fig")


def image_alt(metadata: dict) -> str | None:
    """The alt text MyST-NB gives the cell's image outputs (``mystnb.image.alt``), or None."""
    alt = metadata.get("mystnb", {}).get("image", {}).get("alt")
    return None if alt is None else str(alt)


def code_cells(page: Path) -> list[tuple[int, str, dict]]:
    """(line of the ``{code-cell}`` fence, code, metadata) of each code cell of a MyST notebook page."""
    notebook = read.read_myst_markdown_notebook(page.read_text(), add_source_map=True, path=str(page))
    lines = notebook.metadata.get("source_map", [])
    return [
        (line, cell.source, dict(cell.metadata))
        for line, cell in zip(lines, notebook.cells)
        if cell.cell_type == "code"
    ]


def figure_cells(page: Path) -> list[tuple[int, str | None]]:
    """(line, alt text or None) of each code cell of the page that draws a figure."""
    cells = code_cells(page)
    trees = [python_tree(source) for _, source, _ in cells]
    helpers = figure_helpers(trees)
    return [
        (line, image_alt(metadata)) for (line, _, metadata), tree in zip(cells, trees) if draws_figure(tree, helpers)
    ]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_figure_cell_has_an_alt_text(page):
    missing = [
        f"{page.name}:{line}: " + ("no mystnb.image.alt" if alt is None else f"alt too short ({alt!r})")
        for line, alt in figure_cells(page)
        if alt is None or len(alt.strip()) < MIN_ALT_LENGTH
    ]
    assert not missing, (
        f"figure cells without an alt text of at least {MIN_ALT_LENGTH} characters "
        "(add `mystnb: {image: {alt: ...}}` to the cell's YAML header):\n" + "\n".join(missing)
    )


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_alt_text_sits_only_on_figure_cells(page):
    # An alt text on a cell that the rule says draws nothing is a stray copy, or the rule missed a figure.
    cells = code_cells(page)
    drawing = {line for line, _ in figure_cells(page)}
    stray = [
        f"{page.name}:{line}" for line, _, metadata in cells if image_alt(metadata) is not None and line not in drawing
    ]
    assert not stray, "alt text on cells that draw no figure (by the rule of this module):\n" + "\n".join(stray)


def test_the_chapters_have_the_figure_cells_we_know_of():
    # The rule must keep finding the figures of the finished chapters (counted by hand from their sources).
    expected = {
        "01_forward_process.md": 3,
        "02_reverse_process.md": 7,
        "03_ddpm_ddim.md": 6,
        "04_ode_samplers.md": 7,
        "05_guidance.md": 7,
        "06_stable_diffusion.md": 5,
        "07_field_guide.md": 7,
        "08_after_beta.md": 6,
        "performance.md": 0,
    }
    found = {name: len(figure_cells(BOOK / name)) for name in expected}
    assert found == expected


def test_the_rule_on_small_cells():
    helper = python_tree("def grid(images):\n    fig, ax = plt.subplots()\n    ax.imshow(images)\n    plt.show()\n")
    caller = python_tree("grid(torch.zeros(4, 8, 8))")
    helpers = figure_helpers([helper, caller])
    assert helpers == {"grid"}
    assert not draws_figure(helper, helpers), "a cell that only defines a drawing helper draws nothing"
    assert draws_figure(caller, helpers)
    assert draws_figure(python_tree("%matplotlib inline\nfor k in range(2):\n    plt.plot([k])"), set())
    assert draws_figure(python_tree("fig = make()\nfig"), set())
    assert draws_figure(python_tree("display(fig)"), set())
    assert not draws_figure(python_tree('plt.rcParams.update({"figure.dpi": 110})\nprint("show()")'), set())
    assert not draws_figure(python_tree("buffer = plt.imsave(b, image)"), set())
    assert image_alt({"mystnb": {"image": {"alt": "x"}}, "tags": ["hide-input"]}) == "x"
    assert image_alt({"tags": ["hide-input"]}) is None
