"""Frechet distance, FID and the image measures, against closed forms, scipy and colorsys.

The Frechet distance between N(mu_a, S_a) and N(mu_b, S_b) is |mu_a - mu_b|^2 + tr(S_a + S_b -
2 (S_a S_b)^{1/2}) (Dowson & Landau 1982); for diagonal (commuting) covariances the trace term is
sum_i (s_a,i - s_b,i)^2 with s the standard deviations, and in general scipy.linalg.sqrtm is the
reference pytorch-fid and the FID paper's code use.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import scipy.stats
import torch

from diffusion_internals.course import metrics


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_spd(dim: int, seed: int) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=gen(seed), dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def samples_with_moments(mean: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n points whose sample mean is exactly mean and whose unbiased sample covariance is exactly cov."""
    z = torch.randn(n, len(mean), generator=gen(seed), dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # sample covariance -> identity
    return mean + z @ torch.linalg.cholesky(cov).T


def scipy_frechet(mu_a, cov_a, mu_b, cov_b) -> float:
    root = scipy.linalg.sqrtm(cov_a.numpy() @ cov_b.numpy())
    diff = (mu_a - mu_b).numpy()
    return float(diff @ diff + np.trace(cov_a.numpy() + cov_b.numpy() - 2 * np.real(root)))


# ----------------------------------------------------------------------------- Frechet distance


@pytest.mark.parametrize("seed", range(4))
def test_diagonal_covariances_give_the_sum_of_squared_std_differences(seed):
    g = gen(seed)
    mu_a, mu_b = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    std_a, std_b = (
        torch.rand(6, generator=g, dtype=torch.float64) + 0.1,
        torch.rand(6, generator=g, dtype=torch.float64),
    )
    expected = float(((mu_a - mu_b) ** 2).sum() + ((std_a - std_b) ** 2).sum())
    got = metrics.gaussian_frechet_distance(mu_a, torch.diag(std_a**2), mu_b, torch.diag(std_b**2))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(("dim", "seed"), [(2, 0), (5, 1), (32, 2), (64, 3)])
def test_general_covariances_match_scipy_sqrtm(dim, seed):
    mu_a = torch.randn(dim, generator=gen(seed + 10), dtype=torch.float64)
    mu_b = torch.randn(dim, generator=gen(seed + 20), dtype=torch.float64)
    cov_a, cov_b = random_spd(dim, seed), random_spd(dim, seed + 100)
    expected = scipy_frechet(mu_a, cov_a, mu_b, cov_b)
    assert metrics.gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_stay_real_and_match_the_closed_form():
    # Rank-1 covariances in 3-D (e.g. fewer samples than features): sqrt(S_a S_b) is not unique for scipy,
    # but the distance is; for S_a = u u^T, S_b = v v^T it is |u|^2 + |v|^2 - 2 |u . v|.
    u, v = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    expected = float(u @ u + v @ v - 2 * abs(u @ v))
    got = metrics.gaussian_frechet_distance(zero, torch.outer(u, u), zero, torch.outer(v, v))
    assert got == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_feature_sets_is_the_closed_form_of_their_moments():
    mean_a, mean_b = torch.tensor([0.0, 1.0, -2.0, 0.5], dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    cov_a, cov_b = random_spd(4, 5), random_spd(4, 6)
    a, b = samples_with_moments(mean_a, cov_a, 300, 0), samples_with_moments(mean_b, cov_b, 500, 1)
    assert metrics.frechet_distance(a, b) == pytest.approx(scipy_frechet(mean_a, cov_a, mean_b, cov_b), rel=1e-8)
    assert metrics.frechet_distance(a.float().numpy(), b) == pytest.approx(metrics.frechet_distance(a, b), rel=1e-5)


def test_frechet_distance_is_zero_for_identical_sets_symmetric_and_sees_a_shift():
    a = torch.randn(400, 16, generator=gen(0), dtype=torch.float64) @ random_spd(16, 1)
    b = torch.randn(300, 16, generator=gen(2), dtype=torch.float64) * 2
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-9)
    shift = torch.full((16,), 0.5, dtype=torch.float64)
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-8)


def test_frechet_distance_checks_its_arguments():
    with pytest.raises(ValueError, match="same feature dimension"):
        metrics.frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="must have 2 dimensions"):
        metrics.frechet_distance(torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="finite"):
        metrics.frechet_distance(torch.full((5, 2), float("nan")), torch.zeros(5, 2))


def test_fid_is_the_frechet_distance_of_extracted_features_in_any_batch_size():
    images = torch.randn(50, 1, 4, 4, generator=gen(0))
    reference = torch.randn(60, 1, 4, 4, generator=gen(1)) + 0.3
    extractor = lambda x: x.reshape(len(x), -1)[:, :6] * 2  # noqa: E731
    expected = metrics.frechet_distance(images.reshape(50, -1)[:, :6] * 2, reference.reshape(60, -1)[:, :6] * 2)
    assert metrics.fid(images, reference, extractor, batch_size=7) == pytest.approx(expected, rel=1e-6)


def test_inception_extractor_says_what_is_missing():
    try:
        import torch_fidelity  # noqa: F401

        pytest.skip("torch-fidelity is installed")
    except ImportError:
        pass
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torch-fidelity.*torchvision"):
            metrics.inception_extractor()
    else:
        with pytest.raises(FileNotFoundError, match="weights_path"):
            metrics.inception_extractor(weights_path="/nonexistent/inception.pth")


# ----------------------------------------------------------------------------- image measures


def test_saturation_is_the_mean_hsv_saturation_of_colorsys():
    rgb = torch.rand(3, 3, 5, 5, generator=gen(0), dtype=torch.float64)
    expected = np.mean([colorsys.rgb_to_hsv(*p)[1] for p in rgb.permute(0, 2, 3, 1).reshape(-1, 3).tolist()])
    assert metrics.saturation(rgb * 2 - 1) == pytest.approx(expected, rel=1e-10)
    assert metrics.saturation(torch.zeros(1, 3, 2, 2)) == 0.0  # grey
    assert metrics.saturation(torch.tensor([1.0, -1.0, -1.0]).reshape(1, 3, 1, 1).expand(2, 3, 4, 4)) == 1.0  # red
    assert metrics.saturation(torch.full((1, 3, 2, 2), -5.0)) == 0.0  # black after clamping: no hue


def test_clipping_fraction_counts_values_at_or_beyond_the_limits():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 0.997, 0.9999, 1.0, 2.0, 0.1])
    # Within 1/255 of a limit (8-bit 0 or 255): -1.5, -1.0, -0.999, 0.997, 0.9999, 1.0, 2.0.
    assert metrics.clipping_fraction(x) == pytest.approx(7 / 10)
    assert metrics.clipping_fraction(x, tolerance=0.0) == pytest.approx(4 / 10)
    with pytest.raises(ValueError, match="tolerance"):
        metrics.clipping_fraction(x, tolerance=1.5)


def test_nearest_neighbour_distances_match_brute_force():
    queries, refs = torch.randn(30, 2, 3, generator=gen(0)), torch.randn(40, 2, 3, generator=gen(1))
    brute = scipy.spatial.distance.cdist(queries.reshape(30, -1).double(), refs.reshape(40, -1).double()).min(1)
    torch.testing.assert_close(
        metrics.nearest_neighbour_distances(queries, refs, batch_size=7),
        torch.from_numpy(brute),
        rtol=1e-10,
        atol=1e-12,
    )


def test_classifier_accuracy_is_the_fraction_of_argmax_hits():
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 3]), 4).float()
    assert metrics.classifier_accuracy(torch.zeros(4, 1), labels, lambda x: logits[: len(x)], batch_size=4) == 0.75


# ----------------------------------------------------------------------------- KID and the FID interval


def direct_unbiased_kid(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD^2 written out pair by pair, with scikit-learn's polynomial kernel (gamma 1/D, coef0 1)."""
    from sklearn.metrics.pairwise import polynomial_kernel

    def k(x, y):
        return float(polynomial_kernel(x[None], y[None], degree=3, gamma=1 / a.shape[1], coef0=1)[0, 0])

    m, n = len(a), len(b)
    within_a = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_b = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    between = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return within_a + within_b - 2 * between


@pytest.mark.parametrize("m, n", [(12, 12), (9, 15)])
def test_kernel_distance_is_the_unbiased_mmd_written_out_pair_by_pair(m, n):
    a = torch.randn(m, 5, generator=gen(m), dtype=torch.float64)
    b = torch.randn(n, 5, generator=gen(n + 100), dtype=torch.float64) * 1.3 + 0.4
    assert metrics.kernel_distance(a, b) == pytest.approx(direct_unbiased_kid(a.numpy(), b.numpy()), rel=1e-10)


def test_kernel_distance_is_unbiased_where_the_frechet_distance_is_not():
    # Two samples of one distribution: KID averages to 0 at any sample size, FID to a positive bias ~ D^2 / n.
    kids, fids = [], []
    for seed in range(200):
        a = torch.randn(40, 8, generator=gen(2 * seed), dtype=torch.float64)
        b = torch.randn(40, 8, generator=gen(2 * seed + 1), dtype=torch.float64)
        kids.append(metrics.kernel_distance(a, b))
        fids.append(metrics.frechet_distance(a, b))
    kids = torch.tensor(kids)
    assert abs(float(kids.mean())) < 3 * float(kids.std()) / len(kids) ** 0.5  # 0 within 3 standard errors
    assert min(fids) > 0 and float(torch.tensor(fids).mean()) > 1.0


def test_kernel_distance_sees_a_shift_and_averages_subsets():
    a = torch.randn(300, 6, generator=gen(1), dtype=torch.float64)
    b = torch.randn(300, 6, generator=gen(2), dtype=torch.float64)
    assert metrics.kernel_distance(a, b + 0.5) > 10 * abs(metrics.kernel_distance(a, b))
    # One subset of every row is the whole-set estimate (the estimate does not depend on the order of rows).
    whole = metrics.kernel_distance(a, b + 0.5)
    assert metrics.kernel_distance(a, b + 0.5, subset_size=300, n_subsets=1) == pytest.approx(whole, rel=1e-10)
    subsets = metrics.kernel_distance(a, b + 0.5, subset_size=100, n_subsets=50, seed=3)
    assert subsets == pytest.approx(whole, rel=0.2)  # both unbiased estimates of the same MMD^2


def test_kid_is_the_kernel_distance_of_extracted_features():
    images = torch.rand(20, 1, 4, 4, generator=gen(0)) * 2 - 1
    reference = torch.rand(30, 1, 4, 4, generator=gen(1)) * 2 - 1

    def extractor(x):
        return x.reshape(len(x), -1)[:, :6] * 2

    expected = metrics.kernel_distance(extractor(images), extractor(reference))
    assert metrics.kid(images, reference, extractor, batch_size=7) == pytest.approx(expected, rel=1e-12)


def test_the_fid_interval_holds_the_spread_of_fresh_samples():
    # The oracle: FIDs of many fresh sample sets of one distribution against a fixed reference. The bootstrap
    # sees one sample set only; its interval's half-width must match the fresh sets' spread.
    dim, n = 4, 300
    scale = torch.tensor([1.0, 1.2, 0.8, 1.5], dtype=torch.float64)
    reference = torch.randn(n, dim, generator=gen(0), dtype=torch.float64)

    def draw(seed):
        return torch.randn(n, dim, generator=gen(seed), dtype=torch.float64) * scale + 0.3

    fresh = torch.tensor([metrics.frechet_distance(draw(s), reference) for s in range(1, 401)])
    z90 = 1.6449
    for seed in (1001, 1002, 1003):
        samples = draw(seed)
        low, high = metrics.frechet_distance_interval(samples, reference, confidence=0.9, n_resamples=400)
        estimate = metrics.frechet_distance(samples, reference)
        assert low <= estimate <= high
        assert (high - low) / 2 == pytest.approx(z90 * float(fresh.std()), rel=0.35)
    # The same seed draws the same resamples: the half-widths scale exactly as the two-sided normal quantiles.
    wider = metrics.frechet_distance_interval(draw(7), reference, confidence=0.99, n_resamples=400)
    narrower = metrics.frechet_distance_interval(draw(7), reference, confidence=0.5, n_resamples=400)
    ratio = (wider[1] - wider[0]) / (narrower[1] - narrower[0])
    assert ratio == pytest.approx(scipy.stats.norm.ppf(0.995) / scipy.stats.norm.ppf(0.75), rel=1e-9)


def test_the_fid_interval_resamples_within_strata_as_runs_with_fixed_class_counts_do():
    # Each run draws 150 points of each of two well separated classes. Fresh runs never vary the class counts;
    # a bootstrap across classes does, and overstates the spread; one within classes matches the fresh runs.
    dim, per_class = 3, 150
    means = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.arange(2).repeat_interleave(per_class)

    def draw(seed):
        return means[labels] + torch.randn(2 * per_class, dim, generator=gen(seed), dtype=torch.float64)

    reference = draw(0) * 1.1
    fresh = torch.tensor([metrics.frechet_distance(draw(s), reference) for s in range(1, 401)])
    target = 1.6449 * float(fresh.std())
    samples = draw(999)
    low, high = metrics.frechet_distance_interval(samples, reference, n_resamples=400, strata=labels)
    plain_low, plain_high = metrics.frechet_distance_interval(samples, reference, n_resamples=400)
    assert (high - low) / 2 == pytest.approx(target, rel=0.35)
    assert (plain_high - plain_low) / 2 > 1.5 * target
    with pytest.raises(ValueError, match="strata"):
        metrics.frechet_distance_interval(samples, reference, strata=labels[:-1])


def test_kid_and_interval_check_their_arguments():
    a, b = torch.randn(10, 3), torch.randn(10, 3)
    with pytest.raises(ValueError, match="confidence"):
        metrics.frechet_distance_interval(a, b, confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        metrics.frechet_distance_interval(a, b, n_resamples=1)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kernel_distance(a, b, subset_size=11)
    with pytest.raises(ValueError, match="same feature dimension"):
        metrics.kernel_distance(a, torch.randn(10, 4))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.kernel_distance(a[:1], b)
    with pytest.raises(ValueError, match="n_subsets"):
        metrics.kernel_distance(a, b, n_subsets=-5)
