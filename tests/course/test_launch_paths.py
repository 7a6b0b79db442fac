"""Launch paths of the executable pages: the .ipynb export, the Colab/Binder/download links, the GPU note.

The fast tests check the conversion (MyST page -> notebook) against an independent reading of the
page's code fences, and the URLs against literal expected values; the slow ones check the built site.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import launch_paths as lp  # book/_ext, on pytest's pythonpath (pyproject.toml) as on the book build's
import nbformat
import pytest
import yaml
from support import BIN, ROOT, run

SETTINGS = lp.book_settings(ROOT)
PAGES = lp.book_pages(ROOT)
NOTEBOOK_PAGES = [(doc, path) for doc, path in PAGES if lp.is_notebook_page(path, settings=SETTINGS)]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]

PAGE = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
{extra}---

# A page

Some text, and a fence that is not a cell:

```python
not_a_cell = True
```

```{{code-cell}} ipython3
:tags: [hide-input]

a = 1
```

:::{{note}}
A colon fence.
:::

```{{code-cell}} ipython3
print(a + 1)
```
"""
GPU = 'gpu:\n  vram: "about 4 GB in float16"\n  run_time: "about 2 minutes on a Colab T4"\n'


def fenced_code_cells(text: str) -> list[str]:
    """The code cells of a MyST page by a plain reading of its fences (the oracle; not myst-nb's reader)."""
    cells, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = re.match(r"^(`{3,})\{code-cell\}", lines[i])
        i += 1
        if not match:
            continue
        body = []
        while not lines[i].startswith(match[1]):
            body.append(lines[i])
            i += 1
        i += 1
        if body and body[0] == "---":  # a YAML block of options
            del body[: body.index("---", 1) + 1]
        while body and re.match(r"^:[\w-]+:", body[0]):  # :tags: [...] options
            body.pop(0)
        while body and not body[0].strip():
            body.pop(0)
        cells.append("\n".join(body).rstrip("\n"))
    return cells


def write_page(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "book" / "page.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PAGE.format(extra=extra))
    return path


def course_kernelspec() -> dict:
    """The kernelspec of the graded notebooks the learners already open (exercises/)."""
    nb = json.loads((ROOT / "exercises" / "01_forward_process" / "forward_process.ipynb").read_text())
    return nb["metadata"]["kernelspec"]


# ---- conversion ----------------------------------------------------------------------------------


def test_a_page_becomes_a_notebook_with_its_code_cells_in_order_and_no_outputs(tmp_path):
    nb = lp.page_to_notebook(write_page(tmp_path), settings=SETTINGS, source="book/page.md")
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.source for cell in code] == ["a = 1", "print(a + 1)"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert code[0].metadata["tags"] == ["hide-input"]
    assert nb.metadata["kernelspec"] == course_kernelspec()
    assert "accelerator" not in nb.metadata and "jupytext" not in nb.metadata
    markdown = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert "not_a_cell = True" in markdown and ":::{note}" in markdown
    assert "book/page.md" in nb.cells[0].source, "the first cell says which page the notebook comes from"


def test_glued_numbers_are_named_in_the_notebook_where_roles_would_show_as_plain_text(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "---\nkernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n"
        "The FID is {glue:text}`fid_ddim:.2f`, the step {glue}`step` and {glue:text}`ch::nfe:d`; "
        "see {cite}`ho2020`.\n\n"
        "```{code-cell} ipython3\nglue('fid_ddim', 1.5)\n```\n"
    )
    nb = lp.page_to_notebook(page, settings=SETTINGS, source="book/page.md")
    text = nb.cells[1].source
    expected = "The FID is **[fid_ddim]**, the step **[step]** and **[nfe]**; see {cite}`ho2020`."
    assert text.startswith(expected), text
    assert "glue(...)" in nb.cells[0].source, "the first cell explains the bracketed names"


def test_the_same_page_gives_the_same_bytes(tmp_path):
    path = write_page(tmp_path)
    one, two = (nbformat.writes(lp.page_to_notebook(path, settings=SETTINGS, source="book/page.md")) for _ in "12")
    assert one == two


@pytest.mark.parametrize("docname, path", NOTEBOOK_PAGES, ids=[doc for doc, _ in NOTEBOOK_PAGES])
def test_every_executable_chapter_converts_cell_for_cell(docname, path):
    nb = lp.page_to_notebook(path, settings=SETTINGS, source=f"{docname}.md")
    nbformat.validate(nb)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert code == fenced_code_cells(path.read_text()), f"{docname}: code cells differ from the page's fences"
    assert all(not cell.get("outputs") for cell in nb.cells)
    assert nb.metadata["kernelspec"] == course_kernelspec()


def test_the_executable_pages_are_the_chapters_with_code():
    executable = {doc for doc, _ in NOTEBOOK_PAGES}
    assert "book/01_forward_process" in executable
    assert not executable & {"book/intro", "book/notation", "book/glossary", "book/bibliography"}
    for doc, path in PAGES:
        assert (doc in executable) == bool(fenced_code_cells(path.read_text())), doc


def test_make_notebooks_writes_one_notebook_per_executable_page(tmp_path):
    stale = tmp_path / "book" / "a_removed_chapter.ipynb"
    stale.parent.mkdir()
    stale.write_text("{}")
    result = run([str(BIN / "python"), "book/_ext/launch_paths.py", "--out", str(tmp_path)], cwd=ROOT, timeout=300)
    assert result.returncode == 0, f"make notebooks failed:\n{result.stdout}\n{result.stderr}"
    written = [Path(line) for line in result.stdout.splitlines()[:-1]]
    assert result.stdout.splitlines()[-1] == f"{len(written)} notebooks in {tmp_path}"
    assert not stale.exists(), "a notebook of a page no longer in the book is removed"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        f"{doc}.ipynb" for doc, _ in NOTEBOOK_PAGES
    )
    assert (tmp_path / "README.md").is_file()
    for path in written:
        nbformat.validate(nbformat.read(path, as_version=4))


# ---- URLs --------------------------------------------------------------------------------------------


def test_the_settings_come_from_config_yml():
    assert SETTINGS.repository_url == CONFIG["repository"]["url"]
    assert SETTINGS.branch == CONFIG["repository"]["branch"]
    assert SETTINGS.binderhub_url == CONFIG["launch_buttons"]["binderhub_url"]
    assert SETTINGS.notebooks_branch == CONFIG["sphinx"]["config"]["launch_paths_notebooks_branch"] == "notebooks"
    assert set(SETTINGS.myst_extensions) == set(CONFIG["parse"]["myst_enable_extensions"])


def test_launch_urls():
    settings = lp.LaunchSettings("https://github.com/org/repo.git/", branch="main", notebooks_branch="nbs")
    assert (
        lp.colab_url(settings, "book/01_x")
        == "https://colab.research.google.com/github/org/repo/blob/nbs/book/01_x.ipynb"
    )
    assert (
        lp.binder_url(settings, "book/01_x.md")
        == "https://mybinder.org/v2/gh/org/repo/main?urlpath=lab/tree/book/01_x.md"
    )
    in_docs = lp.LaunchSettings(
        "https://github.com/org/repo", branch="dev", path_to_book="docs", binderhub_url="https://hub.example/"
    )
    assert (
        lp.colab_url(in_docs, "ch") == "https://colab.research.google.com/github/org/repo/blob/notebooks/docs/ch.ipynb"
    )
    assert lp.binder_url(in_docs, "ch.md") == "https://hub.example/v2/gh/org/repo/dev?urlpath=lab/tree/docs/ch.md"
    assert lp.download_href("book/01_x") == "../_notebooks/book/01_x.ipynb"
    assert lp.download_href("index") == "_notebooks/index.ipynb"
    with pytest.raises(ValueError, match="gitlab.com"):
        lp.colab_url(lp.LaunchSettings("https://gitlab.com/org/repo"), "ch")


def test_the_box_links_the_three_launch_paths_and_the_local_line():
    box = lp.box_html(SETTINGS, "book/01_forward_process", "book/01_forward_process.md", None)
    assert (
        'href="https://colab.research.google.com/github/diffusion-internals/diffusion-internals/blob/notebooks/'
        'book/01_forward_process.ipynb"' in box
    )
    assert (
        'href="https://mybinder.org/v2/gh/diffusion-internals/diffusion-internals/main'
        '?urlpath=lab/tree/book/01_forward_process.md"' in box
    )
    assert 'href="../_notebooks/book/01_forward_process.ipynb" download' in box
    assert "make notebooks" in box and ".venv/bin/jupyter lab _build/notebooks/book/01_forward_process.ipynb" in box
    assert "Needs a GPU" not in box


# ---- GPU front matter --------------------------------------------------------------------------------


def test_a_gpu_page_says_so_in_the_box_and_asks_colab_for_a_gpu(tmp_path):
    nb = lp.page_to_notebook(write_page(tmp_path, GPU), settings=SETTINGS, source="book/page.md")
    assert nb.metadata["accelerator"] == "GPU"
    assert "Needs a GPU" in nb.cells[0].source and "about 4 GB in float16" in nb.cells[0].source
    gpu = lp.gpu_requirement(yaml.safe_load(GPU))
    assert "about 4 GB in float16" in gpu and "about 2 minutes on a Colab T4" in gpu
    box = lp.box_html(SETTINGS, "book/page", "book/page.md", gpu)
    assert "Needs a GPU" in box and "about 2 minutes on a Colab T4" in box
    assert lp.gpu_requirement({}) is None


@pytest.mark.parametrize(
    "gpu",
    ["4 GB", {"vram": "4 GB"}, {"vram": "4 GB", "run_time": ""}, {"vram": "4 GB", "run_time": "1 min", "ram": "8 GB"}],
)
def test_an_incomplete_gpu_entry_is_refused_with_the_page_named(gpu):
    with pytest.raises(ValueError, match=r"gpu.*book/06_x\.md"):
        lp.gpu_requirement({"gpu": gpu}, page="book/06_x.md")


def test_set_up_cells_install_the_course_release():
    """Colab installs the release the course was tested with, by name and the version of pyproject.toml."""
    spec = f'"diffusion-internals[course]=={VERSION}"'
    setups = {doc: fenced_code_cells(path.read_text())[0] for doc, path in NOTEBOOK_PAGES if doc != "book/performance"}
    for folder in ("solutions", "exercises"):
        for path in sorted((ROOT / folder).glob("*/*.ipynb")):
            cells = nbformat.read(path, as_version=4).cells
            setups[str(path.relative_to(ROOT))] = next((c.source for c in cells if "pip install" in c.source), "")
    unpinned = sorted(name for name, source in setups.items() if spec not in source)
    assert not unpinned, f"these set-up cells do not install {spec}: {unpinned}"


# ---- the built site ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_built_chapter_links_colab_binder_and_its_download(built_book):
    page = (built_book / "book" / "01_forward_process.html").read_text()
    box = lp.box_html(SETTINGS, "book/01_forward_process", "book/01_forward_process.md", None)
    assert box in page
    assert page.index("<h1") < page.index(box) < page.index('id="a-markov-chain-that-adds-noise"'), (
        "the box is under the title, before the first section"
    )
    href = re.search(r'href="([^"]+\.ipynb)" download', page)[1]
    notebook = (built_book / "book" / href).resolve()
    assert notebook.is_file(), f"Download .ipynb points to a missing file {href}"
    nbformat.validate(nbformat.read(notebook, as_version=4))
    # The header's download menu offers that same clean notebook, never the executed one in _sources/.
    offered = {link for link in re.findall(r'href="([^"]+\.ipynb)"', page) if "://" not in link}  # Colab's aside
    assert offered == {href}, f"the page offers more than the clean notebook: {sorted(offered)}"
    assert all(not cell.get("outputs") for cell in nbformat.read(notebook, as_version=4).cells)


def test_the_header_download_is_pointed_at_the_clean_notebook_or_dropped():
    def header(url):
        return [
            {
                "label": "download-buttons",
                "buttons": [
                    {"label": "download-notebook-button", "url": url},
                    {"label": "download-source-button", "url": "x.md"},
                ],
            }
        ]

    buttons = header("../_sources/book/01_forward_process.ipynb")
    lp.offer_clean_notebook(buttons, "../_notebooks/book/01_forward_process.ipynb")
    assert buttons[0]["buttons"][0]["url"] == "../_notebooks/book/01_forward_process.ipynb"
    buttons = header("../_sources/book/intro.ipynb")
    lp.offer_clean_notebook(buttons, None)
    assert [b["label"] for b in buttons[0]["buttons"]] == ["download-source-button"]


@pytest.mark.slow
def test_the_site_holds_the_same_notebooks_as_make_notebooks(built_book, tmp_path):
    lp.export(ROOT, tmp_path)
    for doc, _ in NOTEBOOK_PAGES:
        built = built_book / lp.NOTEBOOK_DIR / f"{doc}.ipynb"
        assert built.read_bytes() == (tmp_path / f"{doc}.ipynb").read_bytes(), doc
        assert 'class="launch-paths"' in (built_book / f"{doc}.html").read_text(), doc
    for doc in ("book/intro", "book/notation", "book/glossary"):
        assert 'class="launch-paths"' not in (built_book / f"{doc}.html").read_text(), doc
        assert not (built_book / lp.NOTEBOOK_DIR / f"{doc}.ipynb").exists()
