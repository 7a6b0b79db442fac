"""Print the built site as a PDF with headless Chromium: one file per page of the book and the whole book (`make pdf`).

    .venv/bin/python scripts/print_pdf.py [--site _build/html] [--out _build/pdf]

The site (`make book`) is served on 127.0.0.1; each page of the table of contents (_toc.yml, in its order) is
opened in Debian's Chromium through its chromedriver (selenium; nothing is downloaded), printed once MathJax has
typeset it (DevTools' Page.printToPDF) to <out>/<page>.pdf, and the pages are joined into
<out>/diffusion-internals.pdf with pdfunite (poppler-utils). Install the tools with
``sudo apt-get install -y chromium chromium-driver poppler-utils`` (Debian/Ubuntu).

The serving and browser helpers here are shared with tests/course/test_site_browser.py and test_pdf.py.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
BOOK_PDF = "diffusion-internals.pdf"
INSTALL_HINT = "sudo apt-get install -y chromium chromium-driver poppler-utils (Debian/Ubuntu)"
ALIASES = {"chromium": ("chromium", "chromium-browser")}
# Every host but the local server fails to resolve: a page gives the same result with or without a network,
# and a file the site loads from elsewhere (a CDN) shows up as a console error instead of passing by chance.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"

# Only the book's text on paper: no navigation, launch buttons, copy buttons or heading anchors.
PRINT_CSS = """
@media print {
  .bd-header, .bd-header-announcement, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article,
  .prev-next-area, .bd-footer, .bd-footer-content, .footer-article, .skip-link, .headerlink, button.copybtn,
  .header-article-items, #pst-back-to-top { display: none !important; }
  .bd-main .bd-content .bd-article-container { max-width: 100% !important; }
  /* Code wraps, and a long block breaks across pages: the theme keeps each block whole and a scrolling box
     cannot be split, which left a cell's frame empty at the foot of a page. */
  pre { white-space: pre-wrap !important; word-break: break-word; overflow: visible !important; }
  div.cell div.highlight, div.cell div[class*="highlight-"] { break-inside: auto !important; }
  figure, img { break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; }
}
"""
# A4 with its margins, in inches (DevTools' Page.printToPDF).
PAPER = {
    "paperWidth": 8.27,
    "paperHeight": 11.69,
    "marginTop": 0.5,
    "marginBottom": 0.6,
    "marginLeft": 0.5,
    "marginRight": 0.5,
}
# On paper there is no scroll bar: a formula wider than the column is scaled down to fit it (print layout measured).
FIT_FORMULAS = """
for (const box of document.querySelectorAll("mjx-container")) {
  const math = box.querySelector(":scope > mjx-math");
  const wide = math ? math.getBoundingClientRect().width : 0;
  if (wide > box.clientWidth + 1) math.style.zoom = (box.clientWidth - 2) / wide;
}
"""
FOOTER = (
    '<div style="font-size:8px;width:100%;text-align:center;color:#666">'
    '<span class="title"></span> &middot; <span class="pageNumber"></span></div>'
)
# Resolves to "typeset", "none" (the page loads no MathJax), "not loaded" (its script failed: MathJax scripts are
# deferred or async, so they have run by the load event) or "error: ...".
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const until = Date.now() + arguments[0] * 1000;
const script = document.querySelector('script[src*="mathjax" i]');
let loaded = null;
(function poll() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done("typeset"), (e) => done("error: " + e));
  } else if (!script) {
    done("none");
  } else if (document.readyState === "complete" && (loaded = loaded || Date.now()) < Date.now() - 1000) {
    done("not loaded");
  } else if (Date.now() > until) {
    done("not loaded");
  } else {
    setTimeout(poll, 50);
  }
})();
"""


def toc_pages(root: Path = ROOT) -> list[str]:
    """The book's pages in the order of _toc.yml, as paths without suffix ("book/intro", "book/01_forward_process")."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        pages += [chapter["file"] for chapter in part.get("chapters", [])]
    return [str(Path(page).with_suffix("")) for page in pages]


def browser_paths() -> tuple[str, str] | None:
    """Chromium and its chromedriver, found on PATH; None when either is missing."""
    browser = next(filter(None, map(shutil.which, ALIASES["chromium"])), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def missing_tools(*tools: str) -> str | None:
    """Which of these programs (chromium, chromedriver, pdfunite, pdftotext, ...) are missing, with the install
    command; None when all are there."""
    missing = [tool for tool in tools if not any(map(shutil.which, ALIASES.get(tool, (tool,))))]
    return f"{', '.join(missing)} missing; install: {INSTALL_HINT}" if missing else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve a folder on 127.0.0.1 (a free port, threads) while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def chromium(*, width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """Headless Chromium through the system chromedriver (Selenium Manager never runs); console log kept."""
    paths = browser_paths()
    if paths is None:
        raise FileNotFoundError(missing_tools("chromium", "chromedriver"))
    browser, driver_path = paths
    os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: no download even if the driver were not given
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", OFFLINE):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: webdriver.Chrome, url: str, *, mathjax_timeout: float = 20) -> str:
    """Load a page and wait until MathJax has typeset it; returns MathJax's state (see WAIT_FOR_MATHJAX)."""
    driver.get(url)
    driver.set_script_timeout(mathjax_timeout + 5)
    return driver.execute_async_script(WAIT_FOR_MATHJAX, mathjax_timeout)


def print_page(driver: webdriver.Chrome, url: str) -> bytes:
    """The page at url as PDF bytes: A4, backgrounds, the page's title and number in the footer."""
    state = open_page(driver, url)
    if state != "typeset" and state != "none":
        raise RuntimeError(f"MathJax {state} on {url}: the PDF would show raw TeX")
    driver.execute_script(
        "const s = document.createElement('style'); s.textContent = arguments[0]; document.head.appendChild(s);",
        PRINT_CSS,
    )
    # Formulas are measured in the layout of the paper: print media, as wide as the text on the page.
    column = round((PAPER["paperWidth"] - PAPER["marginLeft"] - PAPER["marginRight"]) * 96)  # CSS px
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    metrics = {"width": column, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.execute_script(FIT_FORMULAS)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    pdf = driver.execute_cdp_cmd(
        "Page.printToPDF",
        {
            **PAPER,
            "printBackground": True,
            "displayHeaderFooter": True,
            "headerTemplate": "<span></span>",
            "footerTemplate": FOOTER,
            "generateDocumentOutline": True,
        },
    )
    return base64.b64decode(pdf["data"])


def print_book(site: Path, out: Path, *, root: Path = ROOT) -> Path:
    """Print every page of the table of contents to out/<page>.pdf and join them into out/diffusion-internals.pdf."""
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"no built site in {site}: run `make book` first")
    if missing_tools("pdfunite"):
        raise FileNotFoundError(missing_tools("pdfunite"))
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    with serve(site) as base, chromium() as driver:
        for page in toc_pages(root):
            start = time.perf_counter()
            target = out / f"{Path(page).name}.pdf"
            target.write_bytes(print_page(driver, base + page + ".html"))
            parts.append(target)
            print(f"print_pdf: {page}.html -> {target} ({time.perf_counter() - start:.1f} s)")
    book = out / BOOK_PDF
    subprocess.run(["pdfunite", *map(str, parts), str(book)], check=True)
    print(f"print_pdf: the whole book -> {book}")
    return book


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html", help="the built site (make book)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf", help="where the PDFs go")
    args = parser.parse_args(argv)
    try:
        print_book(args.site, args.out)
    except FileNotFoundError as error:
        print(f"print_pdf: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"print_pdf: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
