"""The one scorer, evaluation.score, against independent computations of its measures.

Oracles: scipy's matrix square root for the Frechet distance of Gaussians fitted with numpy, matplotlib's
RGB -> HSV conversion for saturation, and numpy counts for accuracy, class shares and clipped values. The
classifier and its features are the committed ones: the scorer must read them, not re-implement them.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from matplotlib.colors import rgb_to_hsv

from diffusion_internals.course import evaluation
from diffusion_internals.course.checkpoints import load_classifier
from diffusion_internals.course.data import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)) with numpy moments and scipy's sqrtm (Heusel et al. 2017)."""
    alive = (a != 0).any(0) | (b != 0).any(0)  # a ReLU feature that is 0 everywhere adds 0 and makes S singular
    a, b = a[:, alive], b[:, alive]
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a + cov_b - 2 * np.real(scipy.linalg.sqrtm(cov_a @ cov_b))))


def perturbed(dataset: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-split images with noise, some pushed past [-1, 1], and their labels: stand-ins for samples."""
    train = load_dataset(dataset, split="train")
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train.labels), generator=g)[:200]
    images = train.images[index] * 1.3 + 0.2 * torch.randn(train.images[index].shape, generator=g)
    return images, train.labels[index]


@pytest.mark.parametrize("dataset", ["digits", "colour_digits"])
def test_score_is_fid_accuracy_and_class_shares_of_the_clipped_samples(dataset):
    images, labels = perturbed(dataset)
    classifier, test = load_classifier(dataset), load_dataset(dataset, split="test")
    clipped = images.clamp(-1, 1)
    with torch.no_grad():
        features = classifier.features(clipped).double().numpy()
        reference = classifier.features(test.images).double().numpy()
        predicted = classifier(clipped).argmax(1).numpy()
    got = evaluation.score(images, labels, dataset)
    assert got["fid"] == pytest.approx(numpy_fid(features, reference), rel=1e-4)
    assert got["accuracy"] == pytest.approx(np.mean(predicted == labels.numpy()), abs=1e-12)
    shares = np.bincount(predicted, minlength=10) / len(predicted)
    assert got["class_histogram_max_deviation"] == pytest.approx(np.abs(shares - 0.1).max(), abs=1e-12)
    assert ("saturation" in got) == (dataset == "colour_digits")


def test_score_measures_colour_on_rgb_samples():
    images, labels = perturbed("colour_digits", seed=1)
    got = evaluation.score(images, labels, "colour_digits")
    hsv = rgb_to_hsv(((images.double().numpy() + 1) / 2).clip(0, 1).transpose(0, 2, 3, 1))  # (N, H, W, 3)
    assert got["saturation"] == pytest.approx(hsv[..., 1].mean(), rel=1e-9)
    x = images.double().numpy()
    assert got["clipping_fraction"] == pytest.approx(np.mean((x <= -1 + 1 / 255) | (x >= 1 - 1 / 255)), abs=1e-12)
    assert got["clipping_fraction"] > 0.05  # the stand-ins do reach past the range


def test_the_test_split_scores_fid_zero_and_the_reference_is_a_copy():
    test = load_dataset("digits", split="test")
    assert evaluation.score(test.images, test.labels, "digits")["fid"] == pytest.approx(0.0, abs=1e-6)
    reference = evaluation.reference_features("digits")
    assert reference.shape == (len(test.labels), 64)
    reference.zero_()  # the caller's copy: the scorer's cached reference is untouched
    assert evaluation.score(test.images, test.labels, "digits")["fid"] == pytest.approx(0.0, abs=1e-6)


def test_score_names_the_bad_argument():
    images, labels = perturbed("digits")
    with pytest.raises(ValueError, match="dataset must be one of"):
        evaluation.score(images, labels, "cifar10")
    with pytest.raises(ValueError, match="labels must be an integer tensor of shape"):
        evaluation.score(images, labels[:-1], "digits")
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        evaluation.score(images, labels.double(), "digits")
    with pytest.raises(ValueError, match="samples must be a floating-point tensor"):
        evaluation.score(images[:1], labels[:1], "digits")
    with pytest.raises(ValueError, match="samples must be a floating-point tensor"):
        evaluation.score(images[:, 0], labels, "digits")


@pytest.mark.parametrize(
    "change, match",
    [
        # The classifier of the other data set would fail deep inside a convolution, or score another image size.
        (
            lambda x, y: (x.expand(-1, 3, -1, -1), y),
            r"samples must be a floating-point tensor \(N, 1, 8, 8\).*\(200, 3, 8, 8\)",
        ),
        (
            lambda x, y: (x.repeat(1, 1, 2, 2), y),
            r"samples must be a floating-point tensor \(N, 1, 8, 8\).*\(200, 1, 16, 16\)",
        ),
        (lambda x, y: ((x * 100).long(), y), r"samples must be a floating-point tensor .* dtype torch.int64"),
        (lambda x, y: (x.masked_fill(x > 0.9, float("nan")), y), "samples must not contain NaN"),
        # A label no class has would count as a miss without a word.
        (lambda x, y: (x, y.masked_fill(y == 3, 10)), r"labels must be an integer tensor .* values in \[0, 9\]"),
        (lambda x, y: (x, y - 1), r"labels must be an integer tensor .* values in \[0, 9\]"),
        (lambda x, y: (x, y > 4), r"labels must be an integer tensor .* values in \[0, 9\]"),
    ],
)
def test_score_refuses_samples_and_labels_it_cannot_judge(change, match):
    images, labels = perturbed("digits")
    with pytest.raises(ValueError, match=match):
        evaluation.score(*change(images, labels), "digits")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_score_judges_samples_of_any_float_dtype_as_the_classifier_sees_them(dtype):
    # Oracle: the classifier run by hand on the samples cast to its float32, as in the first test.
    images, labels = perturbed("digits", seed=2)
    images = images.to(dtype)
    classifier, test = load_classifier("digits"), load_dataset("digits", split="test")
    clipped = images.float().clamp(-1, 1)
    with torch.no_grad():
        features = classifier.features(clipped).double().numpy()
        reference = classifier.features(test.images).double().numpy()
        predicted = classifier(clipped).argmax(1).numpy()
    got = evaluation.score(images, labels, "digits")
    assert got["fid"] == pytest.approx(numpy_fid(features, reference), rel=1e-4)
    assert got["accuracy"] == pytest.approx(np.mean(predicted == labels.numpy()), abs=1e-12)


def tiny_denoisers():
    """The three families around one small untrained class-conditional U-Net."""
    from diffusion_internals import schedules
    from diffusion_internals.course.models import class_conditional_unet
    from diffusion_internals.denoisers import DiscreteDenoiser
    from diffusion_internals.flow import FlowDenoiser
    from diffusion_internals.preconditioning import EDMDenoiser

    torch.manual_seed(0)
    unet = class_conditional_unet(block_out_channels=(8, 16)).eval().requires_grad_(False)
    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", 1000))
    return {"leading": DiscreteDenoiser(unet, abar), "flow": FlowDenoiser(unet), "karras": EDMDenoiser(unet)}


@pytest.mark.parametrize("grid", ["leading", "flow", "karras"])
def test_sampling_and_evaluation_pick_the_grid_of_the_models_family(grid):
    # Discrete models keep DDIM's "leading" timesteps (the committed metrics); flow models the t grid from 1
    # to 0; EDM models the Karras grid over their sigma range. Another grid gives other samples.
    denoiser = tiny_denoisers()[grid]
    labels = torch.arange(10)

    def draw(**schedule):
        return evaluation.sample_classes(
            denoiser, labels, guidance_scale=3.0, steps=4, generator=torch.Generator().manual_seed(0), **schedule
        )

    assert evaluation.default_schedule(denoiser) == grid
    torch.testing.assert_close(draw(), draw(schedule=grid), rtol=0, atol=0)
    if grid != "flow":  # a flow model has no other grid here: no alphas_cumprod, and sigma_min = 0
        assert not torch.allclose(draw(), draw(schedule="trailing" if grid == "leading" else "exponential"))
    results = evaluation.evaluate(denoiser, "digits", guidance_scales=(1.0,), per_class=1, steps=2)
    described = {
        "leading": "leading spacing",
        "flow": "flow grid, shift 1 (t from 1 to 0: DDIM at eta 0 is the flow-matching Euler step)",
        "karras": "karras grid, sigma 0.002 to 80, rho 7",
    }[grid]
    assert results["sampler"] == f"ddim, eta 0, 2 steps, {described}, seed 0, 1 samples per class"


def test_fid_half_width_is_the_interval_of_the_scored_features_and_shrinks_with_more_samples():
    # The half-width is that of metrics.frechet_distance_interval on the features score() uses (clipped samples,
    # the committed classifier), resampled within classes; with 4x the samples it is about half as wide.
    from diffusion_internals.course import metrics
    from diffusion_internals.course.checkpoints import load_classifier
    from diffusion_internals.course.data import load_dataset

    train = load_dataset("digits", split="train")
    images, labels = train.images[:1200] * 1.1, train.labels[:1200]  # some pixels beyond [-1, 1], clipped by both
    classifier = load_classifier("digits")
    features = metrics.extract_features(images.clamp(-1, 1), classifier.features)
    reference = evaluation.reference_features("digits")
    _, high = metrics.frechet_distance_interval(features, reference, confidence=0.9, strata=labels)
    expected = high - metrics.frechet_distance(features, reference)
    assert evaluation.fid_half_width(images, labels, "digits") == pytest.approx(expected, rel=1e-9)
    small = evaluation.fid_half_width(images[:300], labels[:300], "digits")
    assert 1.4 < small / expected < 3.0, (small, expected)
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        evaluation.fid_half_width(images, labels[:10], "digits")


def test_committed_results_reads_the_working_tree_and_names_the_tables():
    import csv

    from diffusion_internals.course.results import RESULTS, committed_results

    rows = committed_results("quality_vs_nfe.csv")
    with open(RESULTS / "quality_vs_nfe.csv", newline="") as f:
        assert rows == list(csv.DictReader(f))
    with pytest.raises(FileNotFoundError, match="quality_vs_nfe_families.csv"):
        committed_results("no_such_table.csv")
    with pytest.raises(ValueError, match="ending in .csv"):
        committed_results("../README.md")
