"""Launch paths for every executable page: Colab, Binder, a downloadable .ipynb and a local line.

A Sphinx extension (registered in ``_config.yml`` under ``sphinx: local_extensions``, which puts
``book/_ext`` on the build's import path) that

1. puts a "Run this chapter" box under the title of every notebook page (a MyST markdown
   notebook, or an .ipynb, with at least one code cell), and a "Needs a GPU" warning when the
   page's front matter has a ``gpu:`` entry (see :func:`gpu_requirement`);
2. writes each such page as a clean notebook (no outputs) to ``<html>/_notebooks/<page>.ipynb``
   when the build finishes, which the box's "Download .ipynb" link points to;
3. points the header's ".ipynb" download at that same clean notebook (see :func:`offer_clean_notebook`).

Run as a script (``make notebooks``), it writes the same notebooks, through the same
:func:`page_to_notebook`, to a folder that the Pages workflow pushes to the orphan ``notebooks``
branch; the "Open in Colab" links point there, because Colab opens only .ipynb files. Pages are
those of ``_toc.yml``, settings those of ``_config.yml``, read the way jupyter-book reads them::

    .venv/bin/python book/_ext/launch_paths.py [--out _build/notebooks]
"""

from __future__ import annotations

import argparse
import html
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]  # the repository: book/_ext/launch_paths.py
NOTEBOOK_DIR = "_notebooks"  # inside the HTML output: <html>/_notebooks/book/01_forward_process.ipynb
NOTEBOOKS_BRANCH = "notebooks"  # the orphan branch the Pages workflow pushes and Colab opens
# The kernelspec of the course's distributed notebooks (the same as the graded notebooks in
# exercises/): "python3" is the kernel Colab and Binder run; locally, pick the course's kernel.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# A number the page's code computes is glued into the prose ({glue:text}`fid_ddim:.2f`); a notebook shows roles
# as plain text, so the exported notebook names the glued value instead: **[fid_ddim]**.
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(?:[\w.-]+::)?([\w.-]+)(?::[^`]*)?`")
GPU_KEYS = ("vram", "run_time")  # required in a page's `gpu:` front matter; `note` is optional


@dataclass(frozen=True)
class LaunchSettings:
    """Where the launch links point: the GitHub repository, its branch, the book's folder, BinderHub."""

    repository_url: str  # https://github.com/<org>/<repo>
    branch: str = "main"
    path_to_book: str = ""
    binderhub_url: str = "https://mybinder.org"
    notebooks_branch: str = NOTEBOOKS_BRANCH
    myst_extensions: tuple[str, ...] = ()

    @property
    def org_repo(self) -> str:
        """`<org>/<repo>` of a GitHub repository URL."""
        match = re.fullmatch(r"https?://(?:www\.)?github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", self.repository_url)
        if not match:
            raise ValueError(
                f"repository_url must be a GitHub URL https://github.com/<org>/<repo>, got {self.repository_url!r}"
            )
        return f"{match[1]}/{match[2]}"

    @classmethod
    def from_sphinx_config(cls, config: Any) -> LaunchSettings:
        """Settings from Sphinx's config (or the dict jupyter_book.config.get_final_config makes of _config.yml)."""

        def get(key: str, default: Any) -> Any:
            return config[key] if key in config and config[key] is not None else default

        theme = get("html_theme_options", {}) or {}
        buttons = theme.get("launch_buttons", {}) or {}
        return cls(
            repository_url=theme.get("repository_url", ""),
            branch=theme.get("repository_branch") or "main",
            path_to_book=theme.get("path_to_docs") or "",
            binderhub_url=buttons.get("binderhub_url") or "https://mybinder.org",
            notebooks_branch=get("launch_paths_notebooks_branch", NOTEBOOKS_BRANCH),
            myst_extensions=tuple(get("myst_enable_extensions", ())),
        )

    def repo_path(self, source: str) -> str:
        """The path of a page's source (relative to the book) inside the repository."""
        return posixpath.join(self.path_to_book, source) if self.path_to_book else source


def notebook_path(docname: str) -> str:
    """The notebook's path, relative to the notebooks folder or branch: `book/01_forward_process.ipynb`."""
    return f"{docname}.ipynb"


def colab_url(settings: LaunchSettings, docname: str) -> str:
    """Colab opens the page's exported notebook from the notebooks branch."""
    nb = settings.repo_path(notebook_path(docname))
    return f"https://colab.research.google.com/github/{settings.org_repo}/blob/{settings.notebooks_branch}/{nb}"


def binder_url(settings: LaunchSettings, source: str) -> str:
    """mybinder opens the page's source (a .md opens as a notebook through jupytext, binder/postBuild)."""
    hub = settings.binderhub_url.rstrip("/")
    return f"{hub}/v2/gh/{settings.org_repo}/{settings.branch}?urlpath=lab/tree/{settings.repo_path(source)}"


def download_href(docname: str) -> str:
    """The exported notebook relative to the page's HTML file (`<html>/<docname>.html`)."""
    return posixpath.relpath(posixpath.join(NOTEBOOK_DIR, notebook_path(docname)), posixpath.dirname(docname) or ".")


def gpu_requirement(metadata: Mapping[str, Any], *, page: str = "") -> str | None:
    """The text of a page's `gpu:` front matter (`vram`, `run_time`, optional `note`), or None without one."""
    gpu = metadata.get("gpu")
    if gpu is None:
        return None
    if not isinstance(gpu, Mapping) or any(not isinstance(gpu.get(k), str) or not gpu[k].strip() for k in GPU_KEYS):
        raise ValueError(
            f"front matter `gpu` of {page or 'a page'} must be a mapping with text for {', '.join(GPU_KEYS)} "
            f"(and an optional note), got {gpu!r}"
        )
    unknown = set(gpu) - {*GPU_KEYS, "note"}
    if unknown:
        raise ValueError(
            f"front matter `gpu` of {page or 'a page'} has unknown keys {sorted(unknown)}; "
            f"allowed: {', '.join(GPU_KEYS)}, note"
        )
    text = f"GPU memory: {gpu['vram'].strip()}. Run time: {gpu['run_time'].strip()}."
    return f"{text} {gpu['note'].strip()}" if gpu.get("note") else text


def is_notebook_page(path: Path, *, settings: LaunchSettings) -> bool:
    """A MyST markdown notebook or an .ipynb with at least one code cell: a page a learner can run."""
    if path.suffix == ".md":
        from myst_nb.core.read import is_myst_markdown_notebook

        if not is_myst_markdown_notebook(path.read_text(encoding="utf8")):
            return False
    elif path.suffix != ".ipynb":
        return False
    return any(cell.cell_type == "code" for cell in read_page(path, settings=settings).cells)


def read_page(path: Path, *, settings: LaunchSettings) -> nbformat.NotebookNode:
    """A page as myst-nb reads it: an .ipynb as is, a MyST notebook by myst-nb's reader (front matter -> metadata)."""
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    config = MdParserConfig(enable_extensions=set(settings.myst_extensions))
    return read_myst_markdown_notebook(path.read_text(encoding="utf8"), config=config, path=path)


def page_to_notebook(path: Path, *, settings: LaunchSettings, source: str) -> nbformat.NotebookNode:
    """A page (MyST markdown notebook or .ipynb) as a clean notebook: its cells in order, no outputs.

    The metadata is the course's kernelspec (plus Colab's `accelerator: GPU` when the page needs a GPU);
    a first markdown cell says where the notebook comes from; cell ids are stable, so the same page
    always gives the same bytes.
    """
    nb = read_page(path, settings=settings)
    metadata = nb.metadata
    gpu = gpu_requirement(metadata, page=source)

    header = [
        f"*Diffusion Internals*: this notebook is the page [`{settings.repo_path(source)}`]"
        f"({settings.repository_url}/blob/{settings.branch}/{settings.repo_path(source)}) "
        "without its outputs. Its first code cell installs the course package when it is missing. "
        "Directives such as `{admonition}` and roles such as `{cite}` show as plain text here; "
        "the course site shows them formatted. A number in the text that a cell computes shows here as "
        "**[its name]**, the name under which the cell that computes it passes it to `glue(...)`; the course "
        "site shows the value.",
    ]
    if gpu:
        header.append(f"**Needs a GPU.** {gpu} On Colab: *Runtime > Change runtime type > GPU*.")
    cells = [nbformat.v4.new_markdown_cell("\n\n".join(header))]
    for cell in nb.cells:
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k != "execution"}
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=meta))
        elif cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(GLUE_ROLE.sub(r"**[\1]**", cell.source), metadata=meta))
        else:
            cells.append(nbformat.v4.new_raw_cell(cell.source, metadata=meta))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:03d}"

    nb_metadata: dict[str, Any] = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    if gpu:
        nb_metadata["accelerator"] = "GPU"  # Colab opens the notebook on a GPU runtime
    out = nbformat.v4.new_notebook(cells=cells, metadata=nb_metadata)
    nbformat.validate(out)
    return out


def write_notebooks(pages: Iterable[tuple[str, Path]], out_dir: Path, *, settings: LaunchSettings) -> list[Path]:
    """Write `out_dir/<docname>.ipynb` for each (docname, source path) that is a notebook page.

    Other .ipynb files under `out_dir` (a page that was removed or lost its code) are deleted.
    """
    written = []
    for docname, path in pages:
        if not is_notebook_page(path, settings=settings):
            continue
        nb = page_to_notebook(path, settings=settings, source=f"{docname}{path.suffix}")
        target = out_dir / notebook_path(docname)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf8")
        written.append(target)
    for stale in set(out_dir.rglob("*.ipynb")) - set(written):
        stale.unlink()
    return written


def box_html(settings: LaunchSettings, docname: str, source: str, gpu: str | None) -> str:
    """The "Run this chapter" box (and the GPU warning) for one page, as HTML."""
    nb = notebook_path(docname)
    esc = html.escape
    parts = ['<div class="launch-paths">']
    if gpu:
        parts.append(
            '<div class="admonition warning launch-paths-gpu"><p class="admonition-title">Needs a GPU</p>'
            f"<p>{esc(gpu)}</p></div>"
        )
    parts.append(
        '<div class="admonition tip launch-paths-run"><p class="admonition-title">Run this chapter</p><p>'
        f'<a class="reference external" href="{esc(colab_url(settings, docname))}">Open in Colab</a> · '
        f'<a class="reference external" href="{esc(binder_url(settings, source))}">Launch on Binder</a> · '
        f'<a class="reference download" href="{esc(download_href(docname))}" download>Download .ipynb</a></p>'
        "<p>Locally, in a clone of the repository: <code>make notebooks</code> (it sets up <code>.venv</code> "
        f"the first time), then <code>.venv/bin/jupyter lab _build/notebooks/{esc(nb)}</code> and pick the kernel "
        "<em>Python (diffusion-internals)</em>. The first code cell installs the course package when it is "
        "missing, so Colab needs nothing else.</p></div></div>"
    )
    return "".join(parts)


# ---- make notebooks: the notebooks branch ------------------------------------------------------------

BRANCH_README = """# Notebooks of the Diffusion Internals chapters

Generated by `make notebooks` (book/_ext/launch_paths.py) from the `{branch}` branch and pushed
here by the Pages workflow on every push; do not edit: the chapters' source is `book/*.md` on
`{branch}`. Each notebook is a chapter without outputs; "Open in Colab" on the course site opens
it from this branch.
"""


def book_pages(root: Path) -> list[tuple[str, Path]]:
    """(docname, source path) of every page in the book's table of contents."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    pages = []
    for docname in parse_toc_yaml(root / "_toc.yml"):
        matches = [path for suffix in (".md", ".ipynb") if (path := root / f"{docname}{suffix}").exists()]
        if not matches:
            raise FileNotFoundError(f"_toc.yml lists {docname!r}, but neither {docname}.md nor {docname}.ipynb exists")
        pages.append((docname, matches[0]))
    return pages


def book_settings(root: Path) -> LaunchSettings:
    """The launch settings of _config.yml, translated to Sphinx's config as `jupyter-book build` does."""
    from jupyter_book.config import get_final_config

    config, _ = get_final_config(
        user_yaml=root / "_config.yml", sourcedir=root, cli_config={"latex_individualpages": False}
    )
    return LaunchSettings.from_sphinx_config(config)


def export(root: Path, out: Path) -> list[Path]:
    """Write the notebooks (and a README for the notebooks branch) into `out`; returns the notebooks."""
    settings = book_settings(root)
    written = write_notebooks(book_pages(root), out, settings=settings)
    (out / "README.md").write_text(BRANCH_README.format(branch=settings.branch), encoding="utf8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write every executable page of the book as a clean notebook.")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "notebooks", help="output folder")
    args = parser.parse_args(argv)
    written = export(ROOT, args.out)
    for path in written:
        print(path)
    print(f"{len(written)} notebooks in {args.out}")
    return 0


# ---- Sphinx wiring ---------------------------------------------------------------------------------


def _pages(app) -> list[tuple[str, Path]]:
    return [(docname, Path(app.env.doc2path(docname))) for docname in sorted(app.env.all_docs)]


def _insert_box(app, doctree, docname: str) -> None:
    from docutils import nodes

    if app.builder.format != "html":
        return
    path = Path(app.env.doc2path(docname))
    settings = LaunchSettings.from_sphinx_config(app.config)
    if not is_notebook_page(path, settings=settings):
        return
    source = f"{docname}{path.suffix}"
    gpu_text = gpu_requirement(read_page(path, settings=settings).metadata, page=source)
    box = nodes.raw("", box_html(settings, docname, source, gpu_text), format="html")
    section = doctree.next_node(nodes.section)
    if section is None:
        doctree.insert(0, box)
        return
    title = section.next_node(nodes.title)
    section.insert(section.index(title) + 1 if title is not None and title.parent is section else 0, box)


def offer_clean_notebook(header_buttons: list, url: str | None) -> None:
    """Point the header's ".ipynb" download at the clean export (the box's file), or drop it when there is none.

    sphinx-book-theme links it to the executed notebook in _sources/: outputs included and the kernel name of the
    build machine. One page offers one notebook, the one Colab opens.
    """
    for group in header_buttons:
        buttons = group.get("buttons", []) if isinstance(group, dict) else []
        for button in list(buttons):
            if button.get("label") == "download-notebook-button":
                if url is None:
                    buttons.remove(button)
                else:
                    button["url"] = url


def _header_download(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    if "header_buttons" not in context or pagename not in app.env.all_docs:
        return
    settings = LaunchSettings.from_sphinx_config(app.config)
    exported = is_notebook_page(Path(app.env.doc2path(pagename)), settings=settings)
    url = context["pathto"](posixpath.join(NOTEBOOK_DIR, notebook_path(pagename)), 1) if exported else None
    offer_clean_notebook(context["header_buttons"], url)


def _export(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    settings = LaunchSettings.from_sphinx_config(app.config)
    write_notebooks(_pages(app), Path(app.outdir) / NOTEBOOK_DIR, settings=settings)


def setup(app) -> dict:
    app.add_config_value("launch_paths_notebooks_branch", NOTEBOOKS_BRANCH, "html")
    app.connect("doctree-resolved", _insert_box)
    app.connect("html-page-context", _header_download, priority=600)  # after sphinx-book-theme's buttons (501)
    app.connect("build-finished", _export)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    raise SystemExit(main())
