"""The course site: the whole book builds with every chapter executed and warnings as errors."""
from __future__ import annotations

import html
import re

import pytest

from course import BIN, ROOT, run

HTML = ROOT / "_build" / "html"


def text_of(page: str) -> str:
    """The visible text of an HTML page: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture(scope="module")
def built_book():
    # --all re-reads every page so warnings of unchanged pages are reported again;
    # execution results still come from the jupyter-cache when the code is unchanged.
    result = run([str(BIN / "jupyter-book"), "build", str(ROOT), "--all", "-W", "-n", "--keep-going"], cwd=ROOT, timeout=1500)
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return HTML


@pytest.mark.slow
def test_index_and_chapter_pages_exist(built_book):
    assert (built_book / "index.html").is_file()
    assert (built_book / "book" / "intro.html").is_file()
    assert (built_book / "book" / "01_forward_process.html").is_file()
    assert (built_book / "book" / "02_reverse_process.html").is_file()


@pytest.mark.slow
def test_chapter_1_is_executed_with_figures_and_citations(built_book):
    page = (built_book / "book" / "01_forward_process.html").read_text()
    figures = re.findall(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', page)
    assert len(figures) >= 2, f"expected the schedule and digit figures, found {len(figures)} images"
    for figure in re.findall(r'src="([^"]*_images/[^"]+\.png)"', page):
        assert (built_book / "book" / figure).resolve().is_file(), f"missing image {figure}"
    text = text_of(page)
    assert "Traceback" not in text
    assert "Ho et al." in text, "citations were not rendered"
    assert "empirical mean" in text, "the q_step/q_sample check did not run"
    for function in ("def q_sample", "def q_step", "def alphas_cumprod", "def log_snr"):
        assert function in text, f"the package source ({function}) is not shown"


@pytest.mark.slow
def test_chapter_2_is_executed_with_figures_and_citations(built_book):
    page = (built_book / "book" / "02_reverse_process.html").read_text()
    figures = re.findall(r'src="([^"]*_images/[^"]+\.png)"', page)
    # weights, samples during training, DDPM chain, loss per bucket, digits samples, digits loss curves
    assert len(figures) >= 4, f"expected the toy-training and digits figures, found {len(figures)} images"
    for figure in figures:
        assert (built_book / "book" / figure).resolve().is_file(), f"missing image {figure}"
    text = text_of(page)
    assert "Traceback" not in text
    assert "Vincent" in text and "Peebles" in text, "citations were not rendered"
    for function in ("def diffusion_loss", "def ddpm_step", "def q_posterior", "def v_from_x0_eps",
                     "def x0_from_eps", "def training_target", "def score_from_eps"):
        assert function in text, f"the package source ({function}) is not shown"
    assert "p_ema.lerp_" in text, "the EMA update of training.train is not shown"
    # Output of executed cells (the code that prints them is on the page too, so match printed values):
    # the toy training run, the loss-by-bucket table, the digits metrics and the digits loss table.
    assert re.search(r"[\d,]+ parameters, 2000 steps in [\d.]+ s", text), "the toy training cell did not run"
    assert re.search(r"0\.0-0\.1 +0\.\d{4} +0\.\d{4} +\d\.\d\d", text), "the loss-by-bucket table is missing"
    assert re.search(r"against the test split: \d+\.\d", text), "the digits metrics table is missing"
    for schedule in ("linear", "cosine", "sqrt"):
        row = rf"{schedule} +0\.\d{{4}} +0\.\d{{4}} \|( +0\.\d{{4}}){{5}} \| +\d+\.\d%"
        assert re.search(row, text), f"the digits loss-per-timestep table has no row for {schedule}"


@pytest.mark.slow
def test_bibliography_lists_the_core_papers(built_book):
    page = text_of((built_book / "book" / "bibliography.html").read_text()).lower()
    for title in (
        "Denoising Diffusion Probabilistic Models",
        "Denoising Diffusion Implicit Models",
        "Improved Denoising Diffusion Probabilistic Models",
        "Elucidating the Design Space",
        "DPM-Solver",
        "Classifier-Free Diffusion Guidance",
        "Photorealistic Text-to-Image",
        "Common Diffusion Noise Schedules",
        "Applying Guidance in a Limited Interval",
        "Eliminating Oversaturation",
        "UniPC",
    ):
        assert title.lower() in page, f"{title!r} missing from the bibliography"
