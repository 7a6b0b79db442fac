"""Execute the book's chapters into the build's jupyter-cache, several at a time.

`jupyter-book build` runs each chapter it has no cached result for, one after another. This script
runs them first, one process per core (each chapter sets torch to one thread), exactly as myst-nb's
cache mode does (myst-nb's reader, the kernel aliases of _config.yml, jupyter-cache's execution and
cache), into the cache the build reads, so the build then finds every chapter cached and only renders.
On 2 cores the chapters take about half the time. A chapter that fails here stays uncached: the
build runs it again and reports the error as it always does.

    python scripts/execute_book.py [--course DIR]      (make book and the tests call it)
    python scripts/execute_book.py --only 04_ode_samplers --out /tmp/run   (an author checking one chapter:
        runs it whether cached or not, writes the executed notebook to /tmp/run/04_ode_samplers.ipynb
        and prints the error in full; the cache is left alone)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from myst_nb.core.read import myst_nb_reader_plugin

READER = {"name": "myst_nb_md", "type": "plugin"}  # myst-nb's reader, registered with jupyter-cache


def chapters(course: Path) -> list[Path]:
    """The pages of _toc.yml to run into the cache: MyST Markdown notebooks that do not force their own runs."""

    def files(node) -> list[str]:
        if isinstance(node, dict):
            own = [node[k] for k in ("root", "file") if isinstance(node.get(k), str)]
            return own + [f for v in node.values() if isinstance(v, (dict, list)) for f in files(v)]
        return [f for v in node for f in files(v)] if isinstance(node, list) else []

    def front_matter(page: Path) -> dict:
        text = page.read_text()
        return (yaml.safe_load(text.split("\n---", 1)[0][3:]) or {}) if text.startswith("---") else {}

    pages = [course / f"{name}.md" for name in files(yaml.safe_load((course / "_toc.yml").read_text()))]
    front = {p: front_matter(p) for p in pages if p.exists()}
    # A page whose own mystnb settings run it every build (execution_mode: force) is left to the build.
    return [
        p
        for p, f in front.items()
        if "kernelspec" in f and f.get("mystnb", {}).get("execution_mode", "cache") == "cache"
    ]


def read(page: Path, aliases: dict[str, str]) -> nbformat.NotebookNode:
    """The chapter as the build reads it: myst-nb's reader, then its kernel-name aliases (myst_nb/sphinx_.py)."""
    nb = myst_nb_reader_plugin(str(page))
    kernel = nb.metadata.get("kernelspec", {})
    for pattern, alias in aliases.items():
        if kernel.get("name") is not None and re.fullmatch(pattern, kernel["name"]):
            kernel["name"] = alias
            break
    return nb


def is_cached(cache, nb: nbformat.NotebookNode) -> bool:
    """Whether the cache holds this chapter's code executed (jupyter-cache's match, as the build does)."""
    try:
        cache.match_cache_notebook(nb)
    except KeyError:
        return False
    return True


def execute(job: tuple[str, dict, int, bool]):
    """Run one chapter in its own folder, as myst-nb does (execution_in_temp is off)."""
    path, nb, timeout, allow_errors = job
    nb = nbformat.from_dict(nb)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=allow_errors)
    return nb, result.time, (result.exc_string if result.err is not None else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", type=Path, default=Path(__file__).resolve().parents[1], help="the course folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="chapters at once (default: cores)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these chapters (file names without .md)")
    parser.add_argument("--out", type=Path, help="write the executed notebooks here instead of into the cache")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    course = args.course.resolve()
    config = yaml.safe_load((course / "_config.yml").read_text())
    execute_config = config.get("execute", {})
    if execute_config.get("execute_notebooks") != "cache":
        print("execute_book: _config.yml does not execute into the cache; nothing to do")
        return 0
    aliases = config.get("sphinx", {}).get("config", {}).get("nb_kernel_rgx_aliases", {}) or {}
    # An author's run (--out) always executes and never touches the cache.
    cache = None if args.out else get_cache(str(course / (execute_config.get("cache") or "_build/.jupyter_cache")))
    pages = chapters(course)
    if args.only:
        unknown = sorted(set(args.only) - {p.stem for p in pages})
        if unknown:
            parser.error(f"--only: no cache-mode chapter named {unknown}; chapters: {[p.stem for p in pages]}")
        pages = [p for p in pages if p.stem in args.only]
    todo = []
    for page in pages:
        nb = read(page, aliases)
        if cache is None or not is_cached(cache, nb):
            todo.append((str(page), nb, execute_config.get("timeout", 30), execute_config.get("allow_errors", False)))
    if not todo:
        print("execute_book: every chapter is cached")
        return 0
    print(f"execute_book: running {len(todo)} chapters, {min(args.jobs, len(todo))} at a time", flush=True)
    failed = []
    with ProcessPoolExecutor(min(args.jobs, len(todo))) as pool:
        for (path, _, _, _), (nb, seconds, error) in zip(todo, pool.map(execute, todo), strict=True):
            name = Path(path).name
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, args.out / f"{Path(path).stem}.ipynb")
                print(f"execute_book: {name} ran in {seconds:.0f} s" + (f" and FAILED:\n{error}" if error else ""))
                failed += [name] if error else []
                continue
            if error is not None:
                failed.append(name)
                print(f"execute_book: {name} failed; the build runs it again and reports the error", flush=True)
                continue
            cache.add_nb_to_project(path, read_data=READER)
            cache.cache_notebook_bundle(
                CacheBundleIn(nb, path, data={"execution_seconds": seconds}), check_validity=False, overwrite=True
            )
            print(f"execute_book: {name} ran in {seconds:.0f} s and is cached", flush=True)
    if args.out is not None:
        return 1 if failed else 0
    print(f"execute_book: {len(todo) - len(failed)} of {len(todo)} chapters cached")
    # An author's --only check fails with its chapter; otherwise the build, not this step, reports a failing one.
    return 1 if failed and args.only else 0


if __name__ == "__main__":
    sys.exit(main())
