"""The course site: the whole book builds with every chapter executed and warnings as errors."""

from __future__ import annotations

import html
import re

import pytest
from support import ROOT

HTML = ROOT / "_build" / "html"


def text_of(page: str) -> str:
    """The visible text of an HTML page: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def says(text: str, phrase: str) -> bool:
    """Whether the page's text contains the phrase, whatever line breaks the HTML put between its words."""
    return " ".join(phrase.split()) in " ".join(text.split())


def executed_page(built_book, name: str, min_figures: int) -> str:
    """The visible text of an executed chapter page, after checking its figures exist and no cell failed."""
    page = (built_book / "book" / f"{name}.html").read_text()
    figures = re.findall(r'src="([^"]*_images/[^"]+\.png)"', page)
    assert len(figures) >= min_figures, f"{name}: expected at least {min_figures} figures, found {len(figures)}"
    for figure in figures:
        assert (built_book / "book" / figure).resolve().is_file(), f"{name}: missing image {figure}"
    text = text_of(page)
    assert "Traceback" not in text, f"{name}: a cell failed"
    return text


@pytest.mark.slow
def test_index_and_chapter_pages_exist(built_book):
    assert (built_book / "index.html").is_file()
    assert (built_book / "book" / "intro.html").is_file()
    assert (built_book / "book" / "01_forward_process.html").is_file()
    assert (built_book / "book" / "02_reverse_process.html").is_file()
    assert (built_book / "book" / "03_ddpm_ddim.html").is_file()
    assert (built_book / "book" / "04_ode_samplers.html").is_file()
    assert (built_book / "book" / "05_guidance.html").is_file()
    assert (built_book / "book" / "06_stable_diffusion.html").is_file()
    assert (built_book / "book" / "07_field_guide.html").is_file()
    assert (built_book / "book" / "08_after_beta.html").is_file()


@pytest.mark.slow
def test_chapter_1_is_executed_with_figures_and_citations(built_book):
    text = executed_page(built_book, "01_forward_process", 3)  # + the Markov chain of q and p_theta
    assert "Ho et al." in text, "citations were not rendered"
    assert says(text, "The usual answer, and what the measurements say") and says(text, "buried below log-SNR")
    assert "empirical mean" in text, "the q_step/q_sample check did not run"
    for function in ("def q_sample", "def q_step", "def alphas_cumprod", "def log_snr"):
        assert function in text, f"the package source ({function}) is not shown"
    # The static explorer: a slider over t and radio buttons over five schedules, precomputed frames in the page.
    page = (built_book / "book" / "01_forward_process.html").read_text()
    assert 'id="fwdx-slider"' in page and 'type="range"' in page and 'id="fwdx-img"' in page
    assert "function fwdxShow" in page, "the explorer's script is missing"
    schedules = ("linear", "scaled_linear", "cosine", "sqrt", "zero_terminal_snr")
    for kind in schedules:
        assert f'name="fwdx-schedule" value="{kind}"' in page, f"no radio button for the {kind} schedule"
    steps = re.search(r"var fwdxSteps = (\[.*?\]);", page)
    frames = re.search(r"var fwdxFrames = (\{.*?\});", page)
    assert steps and frames, "the explorer's steps or frames are missing"
    n_steps = len(steps.group(1).split(","))
    assert n_steps >= 10 and steps.group(1).endswith("1000]"), f"the slider's steps: {steps.group(1)}"
    assert frames.group(1).count("data:image/png;base64,") == len(schedules) * n_steps, "frames are missing"
    assert "Static explorer" in text, "the explorer's title is missing"
    stats = re.search(r"var fwdxStats = (\{.*?\});", page)
    assert stats and "nan" not in stats.group(1).lower(), "the explorer prints nan"
    last = re.search(rf'"zero_terminal_snr\|{n_steps - 1}": "([^"]*)"', stats.group(1))
    assert last and r"SNR = 0, log-SNR = \u2212\u221e" in last.group(1), "zero terminal SNR must end at SNR 0, -inf"


@pytest.mark.slow
def test_chapter_2_is_executed_with_figures_and_citations(built_book):
    # weights, samples during training, DDPM chain, loss per bucket, digits samples, digits loss curves
    text = executed_page(built_book, "02_reverse_process", 7)  # + the denoiser field of a 2-D mixture
    assert "Vincent" in text and "Peebles" in text, "citations were not rendered"
    for heading in ("The training loss, derived from the likelihood", "Why the weight is dropped"):
        assert says(text, heading), f"the derivation {heading!r} is not on the page"
    for printed in ("half log-SNR step", "max |F target + v|", "real training digits: FID", "reaches the cap at step"):
        assert printed in text, f"the cell that prints {printed!r} did not run"
    for function in (
        "def diffusion_loss",
        "def ddpm_step",
        "def q_posterior",
        "def v_from_x0_eps",
        "def x0_from_eps",
        "def training_target",
        "def score_from_eps",
    ):
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
def test_chapter_3_is_executed_with_figures_and_citations(built_book):
    # DDIM/DDPM grid, x0_hat trajectory, eta samples, log-SNR ends of the schedules, samples per spacing
    text = executed_page(built_book, "03_ddpm_ddim", 6)  # + one DDIM step in 2-D
    assert "Song et al." in text and "Lin et al." in text, "citations were not rendered"
    assert says(text, "Two things happened in"), "the derivation of DDIM's marginals is not on the page"
    assert text.count("FID 90% +-") >= 2, "the eta and spacing tables lack their bootstrap intervals"
    assert says(text, "the smallest gap between")
    for function in (
        "def ddpm_step",
        "def ddim_step",
        "def inference_timesteps",
        "def sample_ddim",
        "def rescale_zero_terminal_snr",
        "def ddim_scheduler",
    ):
        assert function in text, f"the package source ({function}) is not shown"
    # Output of executed cells (the code that prints them is on the page too, so match printed values):
    # ddim_step at eta = 1 is ddpm_step to round-off, the timestep table, and the spacing experiment, whose
    # cosine/trailing row must show the first timestep 999 with alpha_bar ~ 2.43e-09 and a FID and accuracy.
    assert re.search(r" 900 +800 +(\d\.\de-1\d|0\.0e\+00) +\d\.\d{3}", text), "the eta = 1 vs DDPM check did not run"
    assert "trailing: [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]" in text, "the timestep table is missing"
    row = r"digits-cosine-eps +trailing +10 +0 +999 +2\.43e-09 +2\.03e\+04 +\d+\.\d\d +\d\.\d{3}"
    assert re.search(row, text), "the spacing experiment did not run (no cosine/trailing row)"
    assert re.search(r"digits-linear-v-zsnr +trailing +5 +0 +999 +0\.00e\+00 +inf +\d+\.\d\d +\d\.\d{3}", text), (
        "the zero-terminal-SNR model was not sampled with trailing spacing"
    )
    # ... through the package from sigma = inf, checked against diffusers' DDIMScheduler (no fallback to diffusers)
    assert "first sigma of the package's grid: inf" in text
    gap = re.search(r"from pure noise: DigitsPipeline vs sampling\.sample, max difference (\d\.\de[-+]\d\d)", text)
    assert gap and float(gap[1]) < 1e-5, "the package's zero-terminal-SNR sampling was not checked against diffusers"
    assert re.search(r"digits-linear-v-zsnr +linspace +5 +0 +999", text), "the v-model's linspace rows are missing"
    assert re.search(r" 1\.0 +0 +\d+\.\d\d +\d\.\d{3}", text), "the eta table is missing"


@pytest.mark.slow
def test_chapter_4_is_executed_with_figures_and_citations(built_book):
    # mixture ODE paths, rho grids, convergence orders, default-grid mismatch, quality against NFE, samples
    text = executed_page(built_book, "04_ode_samplers", 6)
    assert "Karras et al." in text and "Lu et al." in text and "Zhao et al." in text, "citations were not rendered"
    for function in (
        "def to_d",
        "def sample_euler",
        "def sample_heun",
        "def sigmas_karras",
        "def _exponential_step",
        "def sample_dpmpp_2m",
        "def ancestral_step",
        "def sample_euler_ancestral",
        "def _uni_step",
        "def gaussian_ode_solution",
    ):
        assert function in text, f"the package source ({function}) is not shown"
    # Output of executed cells (the code that prints them is on the page too, so match printed values).
    # The measured convergence orders on Gaussian data must be the textbook ones.
    for solver, order in (("Euler", 1), ("DDIM", 1), ("Heun", 2), ("DPM++ 2M", 2), ("UniPC", 3)):
        found = re.search(rf"\n *{re.escape(solver)} +(\d\.\d\d) +\d\.\d\de-\d\d +\d\.\d\de-\d\d", text)
        assert found, f"the convergence table has no row for {solver}"
        assert abs(float(found.group(1)) - order) < 0.2, f"{solver}: fitted order {found.group(1)}, expected {order}"
    assert re.search(r"100 \| +62 +\d+\.\d\d +0\.\d{3} +0\.\d{3} +\| +\d+\.\d\d +0\.\d{3}", text), (
        "the default-grid (schedule-solver mismatch) table is missing"
    )
    for sampler in ("DDIM", "Euler", "Heun", "DPM++ 2M Karras", "UniPC", "Euler a"):
        row = rf"\n *{re.escape(sampler)}( +\d+\.\d(?!\d)){{7}}\n"
        assert re.search(row, text), f"the FID-by-NFE table has no row for {sampler}"
        assert re.search(rf"{re.escape(sampler)}: knee at NFE \d+", text), f"no knee printed for {sampler}"
    assert re.search(r"wall time per image: Euler a 50 steps [\d.]+ ms", text), "the seed and timing cell did not run"
    assert says(text, "The usual answer, and what the measurements say") and not says(text, "within 10%")
    assert re.search(r"the band, from the committed seed spread: FID <= \(1 \+ 0\.\d{3}\) x reference", text)
    for printed in ("k-diffusion's wrapper and DPM++ 2M against the course's", "CompVis's DDIM and the package's"):
        assert printed in text, f"the k-diffusion / original-code cell that prints {printed!r} did not run"


@pytest.mark.slow
def test_chapter_5_is_executed_with_the_sweep_and_a_kernel_free_explorer(built_book):
    # mixture histograms, image rows, the plain sweep, every fix on the sweep, the fixes at w = 7 and 15
    text = executed_page(built_book, "05_guidance", 6)  # + guided 2-D trajectories
    assert "Ho and Salimans" in text and "Lin et al." in text and "Saharia et al." in text, "citations missing"
    assert says(text, "Dhariwal and Nichol"), "classifier guidance is cited to the wrong paper"
    assert says(text, "Guidance intervals at w =") and "fid_slack = 2 x" in text, "the calibration cells did not run"
    assert "def optimal_scale" in text and "def _fid_band" in text, "the package's rule is not shown"
    found = dict(re.findall(r"(none|rescale|threshold|interval|apg): optimal w = +([\d.]+)", text))
    assert set(found) == {"none", "rescale", "threshold", "interval", "apg"}, found
    assert 1 <= float(found["none"]) <= 3, f"plain CFG's optimal scale should be small, got {found['none']}"
    # The static explorer: a slider and radio buttons over precomputed frames, all in the page itself.
    page = (built_book / "book" / "05_guidance.html").read_text()
    assert 'id="cfgx-slider"' in page and 'name="cfgx-fix"' in page and "function cfgxShow" in page
    frames = re.search(r"var cfgxFrames = (\{.*?\});", page)
    assert frames and frames.group(1).count("data:image/png;base64,") >= 35, "the explorer's frames are missing"
    assert "Static explorer" in text and "Live explorer" in text
    # Without a kernel the live explorer says so and loads nothing from a CDN (its widgets would stay blank).
    assert says(text, "so it needs a kernel. The published website has none"), "the live explorer's note is missing"
    assert "embed-amd.js" not in page and "require.min.js" not in page, "a widget manager is loaded from a CDN"


@pytest.mark.slow
def test_chapter_6_is_executed_with_figures_and_citations(built_book):
    # VAE round trip, sampler grids, parity images, digits mismatches, log-SNR / sqrt(alpha_bar) of SD's schedule
    text = executed_page(built_book, "06_stable_diffusion", 5)
    assert "Needs a GPU" in text and "about 4 GB" in text, "the GPU banner (front matter gpu:) is missing"
    assert "Rombach et al." in text and "Lin et al." in text, "citations were not rendered"
    for function in ("def decode", "def use_sampler"):
        assert function in text, f"the package source ({function}) is not shown"
    if "pipeline: the tiny random-weight pipeline" in text:  # no checkpoint on the build machine
        assert "noise-like and only the mechanics are real" in text, "the tiny-pipeline notice is missing"
    else:
        assert "pipeline: a trained checkpoint" in text
    rows = re.findall(
        r"(DDIM|DPM\+\+ 2M Karras), guidance_rescale (0\.0|0\.7): latents max\|ours - pipe\| = \S+ "
        r"\((\S+) of max\|latent\|\), images max\|ours - pipe\| = (\S+)",
        text,
    )
    assert len(rows) == 4, "the parity table is missing"
    if "torch.float32, 12 steps" in text:
        assert all(float(r[2]) <= 2e-5 and float(r[3]) <= 1e-5 for r in rows), rows
    assert "my_loop and sd.generate: identical = True" in text
    assert "SNR = 0.004682, sqrt(alpha_bar) = 0.068265" in text
    assert re.search(r"read as +epsilon: (\d+) of \1 latent values are NaN", text), "zero-SNR eps NaN demo missing"
    assert re.search(r"read as v_prediction: 0 of \d+ latent values", text)
    assert "pipe(...), guidance_scale 0 and 0.5 against 1: 0.0e+00, 0.0e+00" in text, "diffusers' scale <= 1 demo"
    fid = dict(re.findall(r"(linear-\S+ [^:\n]*): digits-FID +([\d.]+)", text))
    assert float(fid["linear-v-zsnr read as eps"]) > 10 * float(fid["linear-v-zsnr as trained (v)"]), fid


@pytest.mark.slow
def test_chapter_7_is_executed_with_figures_and_citations(built_book):
    # oversaturation, schedule mismatch, residual noise, blur, class ignored, float16, batch size
    text = executed_page(built_book, "07_field_guide", 7)
    assert "Ho and Salimans" in text and "Saharia et al." in text and "Lin et al." in text, (
        "citations were not rendered"
    )
    for function in ("def gradient_energy", "def residual_noise_std", "class FiniteTrace", "def batch_discrepancy"):
        assert function in text, f"the package source ({function}) is not shown"
    assert re.search(r"scale 7, rescale 0\.7 +0\.\d{3} +0\.\d{3}", text), "the oversaturation table is missing"
    assert "lowest eps error at fixed noise levels: linear/epsilon (the config claims cosine/epsilon)" in text, (
        "the schedule test did not find linear"
    )
    for steps in (5, 10, 20):  # the residual-noise estimate must track the last grid sigma
        found = re.search(rf"\n *{steps} +(\d\.\d{{3}}) \| +(\d\.\d{{3}}) +\d\.\d\d \| +0\.000 +1\.00", text)
        assert found, f"the residual-noise table has no row for {steps} steps"
        assert abs(float(found.group(2)) - float(found.group(1))) < 0.3 * float(found.group(1)) + 0.02
    assert re.search(r"eps read as v, DDIM 25 +0\.\d{3} +0\.\d{3} +\d\.\d\d", text), "the blur table is missing"
    assert re.search(r"ratio at t=100 1\.\d\d", text), "the unconditional-loss test did not run"
    assert re.search(r"float16, sigma_max 2\.03e4 +0 \(sigma 2\.03e\+04\)", text), "the float16 overflow was not found"
    found = re.search(r"per sample +per sample +([\d.e+-]+)", text)
    assert found and float(found.group(1)) < 1e-4, "the fixed sampler is not batch-invariant"
    for row in (
        "oversaturation",
        "schedule mismatch",
        "residual noise",
        "blur",
        "class ignored",
        "fp16 NaN",
        "batch size",
    ):
        assert re.search(rf"{row} +[a-z ]+( +\d+\.\d{{3}}){{3}}", text), f"the summary has no row {row!r}"


@pytest.mark.slow
def test_chapter_8_is_executed_with_figures_and_citations(built_book):
    # training densities and weights, grids on the log-SNR axis, samplers on flow/EDM, quality against NFE,
    # shift and resolution, the shift in sampling
    text = executed_page(built_book, "08_after_beta", 6)
    for cited in ("Esser et al.", "Kingma and Gao", "Dieleman", "Lipman et al.", "Karras et al."):
        assert cited in text, f"citation {cited!r} was not rendered"
    for source in ("def edm_preconditioning", "def step_from_infinity", "def sample_flow_euler", "x_t - t v(x_t, t)"):
        assert source in text, f"the package source ({source}) is not shown"
    # Output of executed cells (the code that prints them is on the page too, so match printed values).
    oracle = re.findall(r"max \|D\(x, sigma\) - x0\| = (\d\.\de[-+]\d\d)", text)
    assert len(oracle) == 5 and all(float(e) < 1e-10 for e in oracle), f"the wrapper check failed: {oracle}"
    found = re.search(r"largest relative difference from eq\. \(eq-x0-weights\): (\d\.\de-\d\d)", text)
    assert found and float(found.group(1)) < 1e-10, "the x0-weight check did not run or failed"
    found = re.search(r"sampling\.sample against DigitsPipeline: max difference (\d\.\de-\d\d)", text)
    assert found and float(found.group(1)) < 1e-4, "zero terminal SNR through the front door did not match diffusers"
    assert "heun: ValueError: sample_heun cannot start at sigma = inf" in text
    found = re.search(
        r"sample_flow_euler against sample_euler on flow_sigmas\(10\): max difference (\d\.\de-\d\d)", text
    )
    assert found and float(found.group(1)) < 1e-4, "flow-matching Euler is not Euler in the sigma view"
    for name in ("digits-cosine-eps", "digits-linear-v-zsnr", "digits-edm", "digits-flow"):
        assert re.search(rf"{name}( +\d+\.\d\d ±\s*\d+\.\d\d){{4}}", text), (
            f"the quality-against-NFE table lacks {name}"
        )
    found = re.search(r"32x32 with shift 4, pooled, against 8x8 on the grid / 4: max difference (\d\.\de-\d\d);", text)
    assert found and float(found.group(1)) < 1e-4, "the upsampled model is not the 8x8 model on the scaled grid"
    assert re.search(r"32x32( +\d+\.\d\d ±\s*\d+\.\d\d){3}", text), "the shift table has no 32x32 row"
    assert re.search(r"1024x1024 +4096 +1\.150 +3\.16 +4\.00", text), "the dynamic-shift table is missing"


@pytest.mark.slow
def test_every_glued_number_is_rendered_as_a_number(built_book):
    # A glue key no cell produced fails the build (-W); a value glue:text cannot format shows as its repr.
    for page in sorted((built_book / "book").glob("0*.html")):
        text = "\n".join(text_of(p) for p in re.findall(r"<p>(.*?)</p>", page.read_text(), flags=re.S))  # prose
        for leftover in ("{glue", "np.float64(", "np.int64(", "tensor(", "array("):
            assert leftover not in text, f"{page.name}: {leftover!r} in the rendered page"


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
        "Diffusion Models Beat GANs",
        "Eliminating Oversaturation",
        "UniPC",
    ):
        assert title.lower() in page, f"{title!r} missing from the bibliography"


@pytest.mark.slow
def test_reference_pages_notation_glossary_guide_and_changelog(built_book):
    chapters = sorted((built_book / "book").glob("0*.html"))
    assert len(chapters) >= 4
    for page in chapters:  # every chapter links to the notation page and the glossary
        source = page.read_text()
        assert 'href="notation.html"' in source and 'href="glossary.html"' in source, f"{page.name} lacks the links"
    notation = text_of((built_book / "book" / "notation.html").read_text())
    for code_name in ("alphas_cumprod", "eta", "rho", "guidance_scale", "log_snr"):
        assert code_name in notation
    glossary = (built_book / "book" / "glossary.html").read_text()
    assert 'id="term-zero-terminal-SNR"' in glossary or "zero terminal SNR" in text_of(glossary)
    guide = text_of((built_book / "book" / "instructor_guide.html").read_text())
    for step in (
        "make release",
        "make autograde",
        "make feedback",
        "grades.csv",
        "apt-get install -y bubblewrap",
        "grading_report.md",
    ):
        assert step in guide, f"the instructor guide does not show {step!r}"
    changelog = text_of((built_book / "book" / "changelog.html").read_text())
    assert "0.3 (to be tagged v0.3.0" in changelog and "Chapter 5, Classifier-free guidance" in changelog
    assert "diffusion_internals.course.checkpoints" in changelog, "the changelog lacks the table of moved modules"


@pytest.mark.slow
def test_performance_appendix_renders_the_committed_benchmark_tables(built_book):
    text = text_of((built_book / "book" / "performance.html").read_text())
    assert "Traceback" not in text
    for header in ("ours / diffusers", "model only (ms)", "within band", "threshold"):
        assert header in text, f"the performance page lacks the column {header!r}"
    for batch in (1, 8):
        assert re.search(rf"dpmpp_2m\s*{batch}\s*0\.\d+", text), (
            f"the sampler-overhead table has no dpmpp_2m row, batch {batch}"
        )
    assert re.search(r"tiny \(random weights\)[^\n]*\s*DPM\+\+ 2M Karras\s*\d+\s*\d\s*0\.\d+", text), (
        "the SD latency table has no DPM++ 2M Karras row, or does not say it ran on the tiny pipeline"
    )
    assert re.search(r"book warm\s*all pages\s*[\d.]+\s*120\.0", text), "the course-operations table is missing"
    assert "05_guidance" in text and "project_c_production" in text
    assert not re.search(r"<td>\s*nan\s*</td>", (built_book / "book" / "performance.html").read_text(), re.I), (
        "a table shows nan where the text promises an empty cell"
    )
    assert re.search(r"DPM\+\+ 2M Karras\s*20\s*\d+\.\d+", text), "the end-to-end table has no DPM++ 2M Karras row"
