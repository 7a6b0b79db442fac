"""What every page of the site loads: each script once, and the course's stylesheet.

Sphinx 7.4 registers a script that has a body and no file (``app.add_js_file(None, body=...)``) twice
when an extension adds it after the builder exists: the builder keeps it as ``filename=None``, and
``prepare_writing`` adds the registry's copy again as ``filename=''``, which does not compare equal.
sphinx-thebe and sphinx-togglebutton do exactly that, so every page declared ``const THEBE_JS_URL`` twice
and the browser logged a SyntaxError. ``unique_scripts`` keeps the first of each (file, attributes) pair.
"""

from __future__ import annotations

from typing import Any


def script_key(script: Any) -> tuple:
    """What makes two script entries the same tag: the file (None and '' alike) and its attributes."""
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items() if k != "priority")))


def unique_scripts(scripts: list) -> list:
    """The scripts in their order, each (file, attributes) pair once."""
    seen: set[tuple] = set()
    kept = []
    for script in scripts:
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _dedupe(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    if "script_files" in context:
        context["script_files"][:] = unique_scripts(context["script_files"])


def setup(app) -> dict:
    app.connect("html-page-context", _dedupe, priority=900)  # after every extension has added its scripts
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
