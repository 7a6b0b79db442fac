"""book/_ext/page_assets.py: every page declares each script once (Sphinx 7.4 registers body-only scripts twice)."""

from __future__ import annotations

import re

import page_assets  # book/_ext, on pytest's pythonpath (pyproject.toml) as on the book build's
import pytest
from sphinx.builders.html._assets import _JavaScript as script  # what the builder keeps in script_files


def test_a_body_only_script_registered_as_none_and_as_empty_is_kept_once():
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [script("a.js"), script(None, body=thebe), script("b.js", **{"async": "async"}), script("", body=thebe)]
    kept = page_assets.unique_scripts(scripts)
    assert kept == scripts[:3], "the first of each (file, attributes) pair is kept, in order"


def test_scripts_that_differ_in_body_or_attributes_are_all_kept():
    scripts = [
        script(None, body="var a = 1;"),
        script(None, body="var b = 2;"),
        script("c.js"),
        script("c.js", defer="defer"),
    ]
    assert page_assets.unique_scripts(scripts) == scripts


@pytest.mark.slow
def test_every_built_page_declares_each_inline_script_once(built_book):
    for page in sorted(built_book.rglob("*.html")):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        html = page.read_text()
        bodies = re.findall(r"<script>(.*?)</script>", html, re.S)
        repeated = sorted({body for body in bodies if bodies.count(body) > 1})
        assert not repeated, f"{page.relative_to(built_book)} declares these scripts twice: {repeated}"
