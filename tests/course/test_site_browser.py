"""The built site as a reader sees it: Debian's Chromium, driven by selenium through the system chromedriver.

Every page of the table of contents is opened from a local server on 127.0.0.1; every other host is made
unresolvable (scripts/print_pdf.py's OFFLINE), so the result does not depend on the network and a file the site
loads from elsewhere shows up as a console error. On every page: no console error, every image loaded, every
formula typeset by MathJax (no error node, no raw TeX left in the text), no traceback in an output; the internal
links of every page resolve (files and anchors, read from the HTML); the static explorers of chapters 1 and 5
change their picture when a control moves; a 390 px wide phone shows no horizontal overflow and cuts off no formula.

Each test collects every problem on every page and fails once with the list; a screenshot of each failing page
is written to _build/browser-failures/. Page load times go to _build/browser-timings.txt (a report, not a check).

Chromium missing: the tests skip with the install command, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from selenium.webdriver.common.by import By
from support import ROOT, require_tools

spec = importlib.util.spec_from_file_location("print_pdf", ROOT / "scripts" / "print_pdf.py")
print_pdf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(print_pdf)

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
# Chapter pages with a static explorer: (page, prefix of the ids: <prefix>-slider, <prefix>-img, radios <prefix>-*).
EXPLORERS = [("book/01_forward_process", "fwdx", "fwdx-schedule"), ("book/05_guidance", "cfgx", "cfgx-fix")]

# Problems of one page as a reader sees them; returns {problems: [...], first: the first bad element or null}.
PAGE_PROBLEMS = r"""
const problems = [];
let first = null;
const flag = (el, text) => { problems.push(text); first = first || el; };
const short = (s, n = 70) => {
  s = (s || "").replace(/\s+/g, " ").trim();
  return s.length > n ? s.slice(0, n) + "..." : s;
};
for (const img of document.images) {
  if (!img.complete || img.naturalWidth === 0) {
    flag(img, `image did not load: ${short(img.getAttribute("src"), 90)} (alt "${short(img.alt, 40)}")`);
  }
}
const maths = [...document.querySelectorAll("span.math, div.math")];
const bare = maths.filter((m) => !m.querySelector("mjx-container"));
if (bare.length) {
  const text = short(bare[0].textContent);
  flag(bare[0], `${bare.length} of ${maths.length} formulas not typeset by MathJax, the first: ${text}`);
}
for (const e of document.querySelectorAll("mjx-merror")) {
  flag(e, `MathJax error: ${short(e.getAttribute("data-mjx-error") || e.textContent)}`);
}
// An inline formula never scrolls at this width (a scroll bar under it would be drawn on Windows and Linux).
const scrolling = [...document.querySelectorAll("span.math")].filter((m) => {
  const overflow = getComputedStyle(m).overflowX;
  return (overflow === "auto" || overflow === "scroll") && m.scrollWidth > m.clientWidth + 1;
});
if (scrolling.length) {
  flag(scrolling[0], `${scrolling.length} inline formulas scroll, the first: ${short(scrolling[0].textContent)}`);
}
// An undefined macro is no error node: MathJax shows its name in red as text (a backslash glyph opens the text).
for (const m of document.querySelectorAll("mjx-container")) {
  if (m.querySelector("mjx-mtext > mjx-c.mjx-c5C:first-child")) {
    const mml = m.querySelector("mjx-assistive-mml mtext[mathcolor]");
    flag(m, `MathJax shows TeX as text (an undefined macro?): ${short(mml ? mml.textContent : m.textContent)}`);
  }
}
// TeX that no formula holds (a $...$ the parser missed, a macro outside math); code and formulas are skipped.
const macros = "frac|begin|end|sqrt|math[a-z]+|operatorname|text|left|right|hat|bar|tilde|alpha|beta|gamma|sigma|" +
  "epsilon|varepsilon|theta|lambda|sum|prod|int|cdot|mid|nabla|partial|approx|sim";
const tex = new RegExp(String.raw`\\[()[\]]|\$\$|\\(?:${macros})(?![A-Za-z])`);
const skip = "pre, code, kbd, samp, script, style, textarea, mjx-container, .math, .highlight";
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const raw = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (tex.test(n.data) && !n.parentElement.closest(skip)) raw.push(n);
}
if (raw.length) {
  flag(raw[0].parentElement, `raw TeX in the text (${raw.length} places), the first: ${short(raw[0].data)}`);
}
if (document.body.textContent.includes("Traceback (most recent call last)")) {
  flag(document.querySelector(".output.traceback"), "a Python traceback on the page");
}
for (const o of document.querySelectorAll(".output.traceback, .output.stderr")) {
  if (/Error|Exception/.test(o.textContent)) {
    flag(o, `${o.classList.contains("traceback") ? "error" : "stderr"} output: ${short(o.textContent)}`);
  }
}
return {problems, first};
"""

# What a phone does not show (null when it shows everything): the innermost elements past the viewport's right edge,
# leaving out fixed ones, those above the page and those inside a box that scrolls or clips (a wide formula or code
# block scrolls in its own box, which is fine; the page must not); and formulas that a box clips without a scroll bar.
OVERFLOW = r"""
const W = document.documentElement.clientWidth;  // the layout viewport: a phone zooms out, so innerWidth grows
const width = document.documentElement.scrollWidth;
const short = (s, n) => { s = (s || "").replace(/\s+/g, " ").trim(); return s.length > n ? s.slice(0, n) + "..." : s; };
// A formula wider than its box that the box cuts off (overflow hidden, no scroll bar): the reader never sees its end.
const cut = [];
for (const math of document.querySelectorAll("mjx-container > mjx-math")) {
  const r = math.getBoundingClientRect();
  for (let p = math.parentElement; p && p !== document.body; p = p.parentElement) {
    const style = getComputedStyle(p);
    if (style.overflowX === "visible") continue;
    const box = p.getBoundingClientRect();
    const px = Math.max(r.right - box.right, box.left - r.left);
    if (px > 1 && ["hidden", "clip"].includes(style.overflowX)) cut.push({math, px});
    break;
  }
}
cut.sort((a, b) => b.px - a.px);
const worst = cut.length ? cut[0].math.parentElement.querySelector("mjx-assistive-mml")?.textContent : "";
const clipped = cut.length ? `${cut.length} formulas cut off by their box (overflow hidden, no scroll bar), the most ` +
  `by ${Math.round(cut[0].px)} px: ${short(worst, 50)}` : null;
if (width <= W + 1) return clipped ? {width, W, offenders: [], clipped, first: cut[0].math} : null;
// Fixed boxes (and what they hold) do not widen the page; a box that scrolls or clips holds its content.
const contained = (el) => {
  for (let p = el; p && p !== document.body; p = p.parentElement) {
    const style = getComputedStyle(p);
    if (style.position === "fixed" || (p !== el && style.overflowX !== "visible")) return true;
  }
  return false;
};
const wide = [...document.body.querySelectorAll("*")].filter((el) => {
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.right > W + 1 && r.bottom > 0 && !contained(el);
});
const outer = new Set();
for (const el of wide) for (let p = el.parentElement; p; p = p.parentElement) outer.add(p);
const leaves = wide.filter((el) => !outer.has(el));
const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
  [...el.classList].slice(0, 2).map((c) => "." + c).join("");
const where = (el) => { const s = el.closest("section[id]"); return s ? ` in section #${s.id}` : ""; };
return {
  width, W, clipped,
  offenders: leaves.slice(0, 3).map((el) => {
    const right = Math.round(el.getBoundingClientRect().right);
    return `${name(el)}${where(el)} reaches ${right} px: "${short(el.textContent, 50)}"`;
  }),
  first: leaves[0] || null,
};
"""


@pytest.fixture(scope="module")
def failures(built_book):
    """The folder for screenshots of failing pages, emptied of an earlier run's."""
    folder = built_book.parent / "browser-failures"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


@pytest.fixture(scope="module")
def site(built_book):
    with print_pdf.serve(built_book) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    require_tools(print_pdf.missing_tools("chromium", "chromedriver"))
    with print_pdf.chromium() as driver:
        yield driver


def pages(site_dir: Path) -> list[str]:
    """Every page of the book: the table of contents in order, then any other page the build wrote into book/."""
    toc = print_pdf.toc_pages()
    others = sorted(str(p.relative_to(site_dir).with_suffix("")) for p in (site_dir / "book").glob("*.html"))
    return toc + [page for page in others if page not in toc]


def screenshot(driver, folder: Path, name: str, element=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if element is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    driver.save_screenshot(str(folder / f"{name.replace('/', '_')}.png"))


def report(problems: list[str], folder: Path) -> str:
    shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    shots = f"; screenshots in {shown}/" if folder.is_dir() else ""
    return f"{len(problems)} problems{shots}:\n" + "\n".join(f"  {problem}" for problem in problems)


# Known causes of console errors, named in the failure message for whoever fixes the site.
HINTS = {
    "ERR_NAME_NOT_RESOLVED": "a file from another host: the site must serve it itself (it fails offline)",
    "favicon.ico": "the pages declare no icon, so the browser asks for /favicon.ico (Sphinx: html_favicon)",
    "invalid theme mode": "pydata-sphinx-theme on a first visit: the page sets no default mode (_config.yml: "
    "sphinx.config.html_context.default_mode)",
}


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call, with the known cause where there is one."""
    errors = []
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            hints = [hint for key, hint in HINTS.items() if key in entry["message"]]
            errors.append(f"console error: {entry['message'][:300]}" + "".join(f" [{hint}]" for hint in hints))
    return errors


@pytest.mark.slow
def test_every_page_loads_with_no_console_error_and_its_images_and_formulas_rendered(
    built_book, site, browser, failures
):
    problems, timings = [], []
    for page in pages(built_book):
        start = time.perf_counter()
        state = print_pdf.open_page(browser, site + page + ".html")
        timings.append((time.perf_counter() - start, page))
        found = browser.execute_script(PAGE_PROBLEMS)
        mine = found["problems"]
        if state not in ("typeset", "none"):
            mine.insert(0, f"MathJax {state}")
        mine += console_errors(browser)
        if mine:
            screenshot(browser, failures, f"{page}-desktop", found["first"])
        problems += [f"{page}: {problem}" for problem in mine]
    table = "\n".join(f"{seconds:6.2f} s  {page}" for seconds, page in sorted(timings, reverse=True))
    (built_book.parent / "browser-timings.txt").write_text(f"page load + MathJax, desktop:\n{table}\n")
    print(f"Page load times (also in _build/browser-timings.txt):\n{table}")
    assert not problems, report(problems, failures)


@pytest.mark.slow
def test_the_static_explorers_change_the_picture_when_a_control_moves(site, browser, failures):
    problems = []
    for page, prefix, radios in EXPLORERS:
        print_pdf.open_page(browser, site + page + ".html")
        slider = browser.find_elements(By.ID, f"{prefix}-slider")
        img = browser.find_elements(By.ID, f"{prefix}-img")
        others = browser.find_elements(By.CSS_SELECTOR, f'input[type="radio"][name="{radios}"]:not(:checked)')
        if not (slider and img and others):
            problems.append(f"{page}: no static explorer (#{prefix}-slider, #{prefix}-img and radios {radios!r})")
            continue
        img = img[0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
        moves = [
            ("the slider moved to its end", "const s = arguments[0]; s.value = s.max;"
             " s.dispatchEvent(new Event('input', {bubbles: true}));", slider[0]),
            ("another radio button clicked", "arguments[0].click();", others[0]),
        ]  # fmt: skip
        before = (img.get_attribute("src"), img.screenshot_as_png)
        for what, script, control in moves:
            browser.execute_script(script, control)
            browser.execute_async_script(
                "const done = arguments[arguments.length - 1]; arguments[0].decode().then(done, done);", img
            )
            after = (img.get_attribute("src"), img.screenshot_as_png)
            if after[0] == before[0]:
                problems.append(f"{page}: {what}: the image's src did not change")
            elif after[1] == before[1]:
                problems.append(f"{page}: {what}: the src changed but the picture on screen did not")
            before = after
        if any(problem.startswith(page) for problem in problems):
            screenshot(browser, failures, f"{page}-explorer", img)
    assert not problems, report(problems, failures)


@pytest.mark.slow
def test_a_phone_scrolls_no_page_sideways_and_cuts_off_no_formula(built_book, site, browser, failures):
    problems = []
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        for page in pages(built_book):
            print_pdf.open_page(browser, site + page + ".html")
            found = browser.execute_script(OVERFLOW)
            if found is None:
                continue
            if found["width"] > found["W"] + 1:
                offenders = "; ".join(found["offenders"]) or "no single element found"
                problems.append(f"{page}: {found['width']} px wide in a {found['W']} px viewport: {offenders}")
            if found["clipped"]:
                problems.append(f"{page}: {found['clipped']}")
            screenshot(browser, failures, f"{page}-phone", found["first"])
        browser.get_log("browser")  # the console was checked on the desktop
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert not problems, report(problems, failures)


class _Anchors(HTMLParser):
    """The ids a page defines and the links it holds (a href, and a meta refresh's target)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            target = re.search(r"url=(.+)", attrs.get("content") or "", re.I)
            if target:
                self.links.append(target.group(1).strip())


def parsed(page: Path, cache: dict[Path, _Anchors]) -> _Anchors:
    if page not in cache:
        cache[page] = _Anchors()
        cache[page].feed(page.read_text(encoding="utf-8", errors="replace"))
    return cache[page]


@pytest.mark.slow
def test_every_internal_link_reaches_a_file_and_its_anchor(built_book):
    """Read from the HTML files (faster than the browser): every same-site link's file exists, and its #anchor."""
    site_dir = built_book.resolve()
    cache: dict[Path, _Anchors] = {}
    problems = []
    for page in sorted(p for p in site_dir.rglob("*.html") if "_static" not in p.relative_to(site_dir).parts):
        name = page.relative_to(site_dir)
        for href in parsed(page, cache).links:
            link = urlsplit(href)
            if link.scheme or link.netloc or href == "#":
                continue
            target = (page.parent / unquote(link.path)).resolve() if link.path else page
            if target.is_dir():
                target = target / "index.html"
            if site_dir not in target.parents or not target.is_file():
                problems.append(f"{name}: link to {href}: no such file in the site")
            elif link.fragment and target.suffix == ".html" and unquote(link.fragment) not in parsed(target, cache).ids:
                problems.append(f"{name}: link to {href}: no #{unquote(link.fragment)} in {target.name}")
    assert cache, f"no HTML pages in {site_dir}"
    assert not problems, f"{len(problems)} broken internal links:\n" + "\n".join(f"  {p}" for p in problems)
