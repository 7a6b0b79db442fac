"""The print edition (`make pdf`): the built site printed by headless Chromium, one PDF per page and the whole book.

The PDF is read back with poppler-utils (pdfinfo, pdftotext, pdfimages): every page of the table of contents is in
it under its title, its figures are embedded, and its formulas were typeset (no TeX delimiters left in the text).
Chromium or poppler-utils missing: the test skips with the install command, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import unicodedata

import pytest
from support import BIN, ROOT, require_tools, run

spec = importlib.util.spec_from_file_location("print_pdf", ROOT / "scripts" / "print_pdf.py")
print_pdf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(print_pdf)

# What a formula MathJax did not typeset leaves in the text: Sphinx's delimiters and environments.
RAW_TEX = re.compile(r"\\[()[\]]|\$\$|\\begin\{")


def normal(text: str) -> str:
    """Text compared as a reader reads it: ligatures and curly quotes folded, runs of white space as one."""
    text = unicodedata.normalize("NFKC", text).translate(str.maketrans("\u201c\u201d\u2018\u2019", "\"\"''"))
    return " ".join(text.split())


def poppler(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout


FOOTER_LINE = re.compile(r"Diffusion Internals \u00b7 \d+\s*$")


def title(page: str) -> str:
    """A page's title: the first `# ` heading of its source."""
    source = (ROOT / f"{page}.md").read_text()
    return re.search(r"^# (.+)$", source, re.M).group(1).strip()


@pytest.mark.slow
def test_the_print_edition_holds_every_page_with_its_title_figures_and_typeset_formulas(built_book, tmp_path):
    require_tools(print_pdf.missing_tools("chromium", "chromedriver", "pdfunite", "pdfinfo", "pdftotext", "pdfimages"))
    printed = run(
        [
            str(BIN / "python"),
            str(ROOT / "scripts" / "print_pdf.py"),
            "--site",
            str(built_book),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        timeout=300,
    )
    assert printed.returncode == 0, f"print_pdf.py failed:\n{printed.stdout[-3000:]}\n{printed.stderr[-3000:]}"
    pages = print_pdf.toc_pages()
    book = tmp_path / print_pdf.BOOK_PDF
    assert book.is_file(), f"no {book.name}; print_pdf.py said:\n{printed.stdout[-2000:]}"

    count = int(re.search(r"^Pages:\s+(\d+)", poppler("pdfinfo", str(book)), re.M).group(1))
    assert count > len(pages), f"{count} PDF pages for {len(pages)} pages of the book"

    # Every PDF page's footer repeats the page's <title> ("5. Classifier-free guidance — Diffusion Internals · 2"):
    # without those lines, a title found in the text is one printed in the body.
    printed_text = poppler("pdftotext", "-enc", "UTF-8", str(book), "-")
    text = normal("\n".join(line for line in printed_text.splitlines() if not FOOTER_LINE.search(line)))
    missing = [title(page) for page in pages if normal(title(page)) not in text]
    assert not missing, f"titles not found in the PDF's text: {missing}"
    raw = sorted({match.group(0) for match in RAW_TEX.finditer(text)})
    assert not raw, f"TeX left in the PDF's text (formulas MathJax did not typeset): {raw}"

    # Every page with a figure on the site has at least one image in its own PDF.
    without = []
    for page in pages:
        if re.search(r'<img [^>]*src="(?:data:image|\.\./_images/)', (built_book / f"{page}.html").read_text()):
            chapter = tmp_path / f"{page.split('/')[-1]}.pdf"
            images = poppler("pdfimages", "-list", str(chapter)).splitlines()[2:]  # after the two header lines
            if not images:
                without.append(page)
    assert not without, f"pages whose figures are missing from their PDF: {without}"
