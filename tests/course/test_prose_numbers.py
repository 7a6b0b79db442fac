"""No number a cell computed is typed into a chapter's prose: it is glued from the cell (myst-nb `glue`).

Every number in the prose of a chapter (markdown cells, figure captions and alt text, admonitions, inline
math; not code, not display math, not the targets of roles such as {cite} or {glue:text}) must be either

- a small integer 0..10 (counts, orders, coefficients of formulas), or the number of an equation, table,
  algorithm, section, figure, chapter, lemma or theorem ("eq. 12", "Table 1", "Algorithm 2"), or
- on the chapter's reviewed list of constants, tests/course/prose_constants/<chapter>.txt: one number per
  line, as written in the prose, with the reason it is a constant and not a measurement after a '#'
  ("1000  # T, the number of training steps of every course model").

A measured number (an FID, a loss, a step where a curve crosses, a parameter count) is glued:
`glue("fid_ddim_50", fid)` in the cell and {glue:text}`fid_ddim_50:.2f` in the prose. The build runs with
warnings as errors, so a glue key no cell produced fails the book test. A listed constant that the prose no
longer uses fails here too, so the lists stay short and reviewed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from myst_nb.core.read import read_myst_markdown_notebook

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "book").glob("0[1-9]_*.md"))
CONSTANTS = Path(__file__).resolve().parent / "prose_constants"

# A number: optional thousands separators, decimals, exponent. Not part of a word or a longer number.
NUMBER = re.compile(
    r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])"  # 652,449
    r"|(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+\u2212]?\d+)?(?!\d|\.\d)"  # 17.38, 2.03e4, 32 in 32x32; not 0.42.1 (a version)
)
REFERENCE = re.compile(
    r"(?:eqs?\.|equations?|Eq\.|Eqs\.|Equations?|Tables?|Algorithms?|Alg\.|Sections?|Sec\.|§|Figures?|Fig\.|"
    r"[Cc]hapters?|Appendix|Lemma|Theorem|Proposition|Corollary|Definition|Step|Exercise)\s*\(?$"
)


def prose(markdown: str) -> str:
    """The text a reader reads as prose, with code, display math, role targets, links and option lines removed."""
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.S)
    text = re.sub(
        r"^(`{3,}|~{3,})\s*\{(?:code-cell|code-block|code|math|literalinclude|glue:figure)\}.*?^\1\s*$",
        " ",
        text,
        flags=re.S | re.M,
    )  # fenced code and display math
    text = re.sub(r"^(`{3,}|~{3,})[A-Za-z][\w+-]*\s*$.*?^\1\s*$", " ", text, flags=re.S | re.M)  # ```text blocks
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)  # display math
    text = re.sub(
        r"^\s*(`{3,}|:{3,})\s*(\{[\w:-]+\}.*)?$", " ", text, flags=re.M
    )  # directive fences (with the argument)
    text = re.sub(r"^\s*:(?!alt:)[\w-]+:.*$", " ", text, flags=re.M)  # directive options but alt text (:width:, :name:)
    text = re.sub(r"^\([\w.-]+\)=\s*$", " ", text, flags=re.M)  # targets (label)=
    text = re.sub(r"\{[\w:.-]+\}`[^`]*`", " ", text)  # roles: {glue:text}`key:.2f`, {cite:p}`ho2020`, {eq}`...`
    text = re.sub(r"`[^`\n]*`", " ", text)  # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"https?://\S+", " ", text)
    return text


def numbers(markdown: str) -> list[tuple[str, str]]:
    """Each number of the prose with the 40 characters before it, minus the ones that need no listing."""
    text = prose(markdown)
    found = []
    for match in NUMBER.finditer(text):
        token, before = match.group(), text[max(0, match.start() - 40) : match.start()]
        after = text[match.end() : match.end() + 2]
        if re.fullmatch(r"\d+", token) and int(token) <= 10 and not re.match(r"\s?(%|x\b|×)", after):
            continue  # a count or a coefficient; but 7% or 3x is a measurement until listed
        if REFERENCE.search(before.rstrip()) or re.search(
            r"(?:eqs?\.|Tables?|Algorithms?|Sections?)\s*[\d,\s]*(?:and|,)\s*$", before
        ):
            continue
        found.append((token, before.replace("\n", " ")))
    return found


def constants(chapter: Path) -> dict[str, str]:
    """The chapter's reviewed constants: number -> the reason it is not a measurement."""
    path = CONSTANTS / f"{chapter.stem}.txt"
    listed = {}
    for line_number, line in enumerate(path.read_text().splitlines() if path.exists() else [], start=1):
        value, _, reason = line.partition("#")
        if not value.strip():
            continue
        assert reason.strip(), f"{path.name}:{line_number}: {value.strip()} needs a reason after '#'"
        assert value.strip() not in listed, f"{path.name}:{line_number}: {value.strip()} is listed twice"
        listed[value.strip()] = reason.strip()
    return listed


def chapter_prose(chapter: Path) -> str:
    """The markdown cells, and the alt text of each figure cell (cell metadata mystnb.image.alt), which is read too."""
    nb = read_myst_markdown_notebook(chapter.read_text())
    texts = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    texts += [
        str(cell.metadata.get("mystnb", {}).get("image", {}).get("alt", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
    ]
    return "\n\n".join(texts)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_number_in_the_prose_is_glued_or_a_reviewed_constant(chapter):
    listed = constants(chapter)
    typed = [(token, before) for token, before in numbers(chapter_prose(chapter)) if token not in listed]
    assert not typed, (
        f"{chapter.name}: {len(typed)} numbers typed into the prose that are neither glued from a cell nor on the "
        f"reviewed list tests/course/prose_constants/{chapter.stem}.txt:\n"
        + "\n".join(f"  {token!r} after ...{before[-40:]!r}" for token, before in typed)
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_listed_constant_is_still_used(chapter):
    used = {token for token, _ in numbers(chapter_prose(chapter))}
    stale = sorted(set(constants(chapter)) - used)
    assert not stale, f"{chapter.stem}.txt lists constants the prose no longer has: {stale}"


def test_the_scanner_finds_typed_numbers_and_ignores_glue_code_math_and_references():
    markdown = (
        "The FID is 17.38 and {glue:text}`fid:.2f` after 1,000 steps; see eq. 12 and Table 1.\n"
        "Code `x = 0.5` and $$\\beta = 0.02$$ are not prose; inline $\\sigma = 80$ is. {cite:p}`ho2020`\n"
        "```{code-cell} ipython3\nprint(3.14)\n```\n"
        "```{figure} images/fig_2.png\n:width: 80%\n:alt: A curve that falls to 0.48 at step 182.\n\n"
        "Caption 5.5.\n```\n```text\nplain 2.5\n```\n"
        "About 7% of it, 3x faster, 2 steps, 12x12 images, diffusers 0.42.1, fp16.\n"
    )
    tokens = [token for token, _ in numbers(markdown)]
    assert tokens == ["17.38", "1,000", "80", "0.48", "182", "5.5", "7", "3", "12"], tokens
