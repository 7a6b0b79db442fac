"""Sample-quality measures: Frechet distance and FID, class accuracy, copies, saturation and clipping.

FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to two sets of features,
whose closed form for Gaussians is due to Dowson & Landau (1982):

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2}).

KID (Binkowski et al. 2018) is the squared maximum mean discrepancy of the two feature sets under the cubic
kernel k(x, y) = (x.y / D + 1)^3, estimated without bias (the diagonal terms left out), so that unlike FID its
expected value does not depend on the number of samples and is 0 for two samples of one distribution:

    KID = mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j) - 2 mean_{i, j} k(a_i, b_j).

FID from a few hundred samples is noisy and biased upwards; :func:`frechet_distance_interval` gives a
bootstrap interval for it, to be quoted with every FID a conclusion is drawn from.

The feature extractor is pluggable: any callable from images ``(B, C, H, W)`` in ``[-1, 1]`` to
features ``(B, D)``. On digits the course uses the penultimate layer of its own small classifier
(:mod:`diffusion_internals.course.checkpoints`), so its numbers are "digits-FID", comparable with each other
only; :func:`inception_extractor` gives the usual Inception-v3 features when their weights are local.

Diagnostics, measures that tell generation failures apart (chapter 7):

* :func:`gradient_energy`: the mean squared difference between neighbouring pixels of each image. White
  noise of standard deviation s adds 2 s^2 to it (the difference of two independent draws), blur removes
  from it. High against the data: residual noise; low: blur.
* :func:`residual_noise_std`: the noise level s that would explain the excess gradient energy of samples
  over reference images, sqrt(max(0, excess / 2)).
* :func:`rms_contrast`: the standard deviation of the pixel values of each image (Peli 1990).
* :class:`FiniteTrace`: a sampler callback that records, at every step, the fraction of finite values of
  the state x and of the denoiser's output: where a float16 run first produces inf or NaN.
* :func:`batch_discrepancy`: the largest difference between samples drawn in one batch and the same
  samples drawn alone; anything but 0 is a batch-statistics or batch-noise bug.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from diffusion_internals.validation import check_images, check_int

__all__ = [
    "gaussian_frechet_distance",
    "frechet_distance",
    "extract_features",
    "fid",
    "frechet_distance_interval",
    "kernel_distance",
    "kid",
    "inception_extractor",
    "classifier_accuracy",
    "nearest_neighbour_distances",
    "saturation",
    "clipping_fraction",
    "gradient_energy",
    "residual_noise_std",
    "rms_contrast",
    "FiniteTrace",
    "batch_discrepancy",
]

Extractor = Callable[[torch.Tensor], torch.Tensor]


def _as_float64(name: str, values: object, ndim: int) -> torch.Tensor:
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}")
    if values.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(values.shape)}")
    values = values.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} must be finite, got inf or NaN")
    return values


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root V diag(sqrt(w)) V^T of a symmetric positive semi-definite matrix."""
    w, v = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T  # round-off can make a zero eigenvalue slightly negative


def gaussian_frechet_distance(
    mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """Squared Frechet distance of N(mu_a, S_a) and N(mu_b, S_b) (Dowson & Landau 1982; Heusel et al. 2017, eq. 6)."""
    mu_a, mu_b = _as_float64("mu_a", mu_a, 1), _as_float64("mu_b", mu_b, 1)
    cov_a, cov_b = _as_float64("cov_a", cov_a, 2), _as_float64("cov_b", cov_b, 2)
    dim = mu_a.shape[0]
    for name, value, shape in (("mu_b", mu_b, (dim,)), ("cov_a", cov_a, (dim, dim)), ("cov_b", cov_b, (dim, dim))):
        if value.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} to match mu_a of shape ({dim},), got {tuple(value.shape)}"
            )
    # tr (S_a S_b)^{1/2} = tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}: the same eigenvalues, but of a symmetric PSD
    # matrix, so eigvalsh is stable where scipy.linalg.sqrtm of the non-symmetric S_a S_b can go complex.
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu_a - mu_b
    value = float(diff @ diff + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_root)
    return max(value, 0.0)  # d^2 >= 0; identical inputs can give -1e-13 from round-off


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (N, D), unbiased covariances (Heusel et al. 2017)."""
    a, b = _two_feature_sets(features_a, features_b)
    for name, f in (("features_a", a), ("features_b", b)):
        if f.shape[0] < 2:
            raise ValueError(f"{name} must hold at least 2 samples to estimate a covariance, got {f.shape[0]}")
    return gaussian_frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def _two_feature_sets(features_a: object, features_b: object) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_float64("features_a", features_a, 2), _as_float64("features_b", features_b, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a and features_b must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}"
        )
    return a, b


def frechet_distance_interval(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    confidence: float = 0.9,
    n_resamples: int = 200,
    seed: int = 0,
    strata: torch.Tensor | None = None,
) -> tuple[float, float]:
    """A bootstrap interval for the Frechet distance: features_a (the samples) resampled, features_b fixed.

    Returns (low, high) = FID -+ z * (the standard deviation of the resampled FIDs); low is cut at 0, where a
    squared distance ends.
    """
    # Efron & Tibshirani 1993, ch. 13, the normal interval: FID +- z * (standard deviation of the FIDs of
    # resamples of the samples with replacement). Not the percentile interval: a resample repeats rows, which
    # shrinks its covariance and biases its FID upwards, so the resampled FIDs sit above the estimate; their
    # spread, not their location, is what they tell us. The reference set is held fixed, as when two
    # samplers are compared against the same reference, whose own noise is then common to both.
    # strata (N,): resample within each group, e.g. the class labels when every run draws a fixed number per
    # class. Resampling across classes varies the class counts, which no run does, and on the course's digits
    # doubles the interval (seed-to-seed std 2.0 vs bootstrap std 4.2-5.0; within classes 1.9-2.5).
    a, b = _two_feature_sets(features_a, features_b)
    if strata is None:
        groups = [torch.arange(a.shape[0])]
    else:
        if not isinstance(strata, torch.Tensor) or strata.shape != (a.shape[0],):
            raise ValueError(
                f"strata must be a tensor of shape ({a.shape[0]},), one group per row of features_a, "
                f"got {getattr(strata, 'shape', type(strata).__name__)}"
            )
        groups = [torch.nonzero(strata.cpu() == value).flatten() for value in torch.unique(strata.cpu())]
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    check_int("n_resamples", n_resamples, minimum=2)
    check_int("seed", seed, minimum=0)
    estimate = frechet_distance(a, b)
    generator = torch.Generator().manual_seed(seed)
    mu_b, cov_b = b.mean(0), torch.cov(b.T)
    resampled = []
    for _ in range(n_resamples):
        rows = torch.cat([group[torch.randint(0, len(group), (len(group),), generator=generator)] for group in groups])
        resampled.append(gaussian_frechet_distance(a[rows].mean(0), torch.cov(a[rows].T), mu_b, cov_b))
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + confidence / 2, dtype=torch.float64)))
    half = z * float(torch.tensor(resampled, dtype=torch.float64).std())
    return max(estimate - half, 0.0), estimate + half


def _unbiased_mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased squared MMD of two sets under the cubic kernel (Binkowski et al. 2018, eq. 2 with the KID kernel)."""
    dim = a.shape[1]
    k_aa = (a @ a.T / dim + 1) ** 3  # (m, m)
    k_bb = (b @ b.T / dim + 1) ** 3  # (n, n)
    k_ab = (a @ b.T / dim + 1) ** 3  # (m, n)
    m, n = a.shape[0], b.shape[0]
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def kernel_distance(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    subset_size: int | None = None,
    n_subsets: int = 100,
    seed: int = 0,
) -> float:
    """Kernel distance (KID): unbiased squared MMD with k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018)."""
    # With subset_size=None the whole sets are compared once (the best estimate at the few hundred samples the
    # course uses); with subset_size=m it is the mean over n_subsets random pairs of subsets of m rows each,
    # as torch-fidelity and clean-fid do for tens of thousands of images (m = 1000, 100 subsets).
    # The kernel's scale x.y / D suits Inception's pool features (non-negative, of order 1); features of another
    # scale (the digits classifier's are much larger) make the cubic term dominate and the estimate very noisy,
    # so standardise them first, e.g. divide both sets by the reference's root-mean-square norm / sqrt(D).
    a, b = _two_feature_sets(features_a, features_b)
    for name, f in (("features_a", a), ("features_b", b)):
        if f.shape[0] < 2:
            raise ValueError(f"{name} must hold at least 2 samples for the unbiased estimate, got {f.shape[0]}")
    check_int("n_subsets", n_subsets, minimum=1)
    check_int("seed", seed, minimum=0)
    if subset_size is None:
        return _unbiased_mmd2(a, b)
    check_int("subset_size", subset_size, minimum=2)
    if subset_size > min(a.shape[0], b.shape[0]):
        raise ValueError(
            f"subset_size must be at most the smaller set's size {min(a.shape[0], b.shape[0])}, got {subset_size}"
        )
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(n_subsets):
        rows_a = torch.randperm(a.shape[0], generator=generator)[:subset_size]
        rows_b = torch.randperm(b.shape[0], generator=generator)[:subset_size]
        values.append(_unbiased_mmd2(a[rows_a], b[rows_b]))
    return sum(values) / len(values)


@torch.no_grad()
def extract_features(images: torch.Tensor, extractor: Extractor, *, batch_size: int = 256) -> torch.Tensor:
    """extractor(images) in batches, without gradients, as one (N, D) tensor."""
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty tensor (N, ...), got {getattr(images, 'shape', type(images))}")
    check_int("batch_size", batch_size, minimum=1)
    features = [extractor(chunk).reshape(chunk.shape[0], -1) for chunk in images.split(batch_size)]
    return torch.cat(features)  # (N, D)


def fid(samples: torch.Tensor, reference: torch.Tensor, extractor: Extractor, *, batch_size: int = 256) -> float:
    """FID: the Frechet distance of the extractor's features of samples and references (Heusel et al. 2017)."""
    return frechet_distance(
        extract_features(samples, extractor, batch_size=batch_size),
        extract_features(reference, extractor, batch_size=batch_size),
    )


def kid(
    samples: torch.Tensor, reference: torch.Tensor, extractor: Extractor, *, batch_size: int = 256, **options: Any
) -> float:
    """KID: the kernel distance of the extractor's features of samples and references (Binkowski et al. 2018)."""
    return kernel_distance(
        extract_features(samples, extractor, batch_size=batch_size),
        extract_features(reference, extractor, batch_size=batch_size),
        **options,
    )


def _to_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) in [-1, 1] -> (B, 3, H, W) uint8, grey repeated to RGB."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images  # (B, 3, H, W)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def inception_extractor(*, weights_path: str | os.PathLike | None = None) -> Extractor:
    """Inception-v3 pool features (2048-d): torch-fidelity, else torchvision, local weights (Szegedy et al. 2016)."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        FeatureExtractorInceptionV3 = None
    if FeatureExtractorInceptionV3 is not None:  # the TF-FID weights: numbers comparable with papers
        try:
            net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path
            ).eval()
        except Exception as error:  # offline, no cached weights
            raise FileNotFoundError(
                f"torch-fidelity is installed but its Inception weights could not be loaded "
                f"({error}); pass weights_path= to a local weights-inception-2015-12-05 "
                f"file"
            ) from error
        return lambda images: net(_to_rgb_uint8(images))[0]
    try:
        import torchvision
    except ImportError:
        raise ImportError(
            "Inception features need torch-fidelity (pip install torch-fidelity) or torchvision; "
            "neither is installed. The digits-FID of the course (checkpoints.load_classifier) needs "
            "neither."
        ) from None
    if weights_path is None or not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"torchvision is installed but weights_path={weights_path!r} is not a local "
            f"Inception-v3 state dict (e.g. torchvision's inception_v3_google-0cc3c7bd.pth)"
        )
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    net.load_state_dict(torch.load(weights_path, map_location="cpu"))
    net.fc = torch.nn.Identity()  # the 2048-d pool features; ImageNet weights, so not paper-comparable FID
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)

    def extract(images: torch.Tensor) -> torch.Tensor:
        x = _to_rgb_uint8(images).float() / 255  # (B, 3, H, W) in [0, 1]
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return net((x - mean) / std)

    return extract


@torch.no_grad()
def classifier_accuracy(
    images: torch.Tensor, labels: torch.Tensor, classifier: Extractor, *, batch_size: int = 256
) -> float:
    """Fraction of images whose arg-max class under classifier(images) -> logits (N, K) is their label."""
    logits = extract_features(images, classifier, batch_size=batch_size)  # (N, K)
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must be a tensor of shape ({images.shape[0]},), got {getattr(labels, 'shape', labels)}"
        )
    return float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def nearest_neighbour_distances(
    queries: torch.Tensor, references: torch.Tensor, *, batch_size: int = 1024
) -> torch.Tensor:
    """Euclidean distance of each query (N, ...) to its nearest reference (M, ...), float64 (N,): memorisation."""
    q = _as_float64("queries", queries.reshape(len(queries), -1), 2)  # (N, D)
    r = _as_float64("references", references.reshape(len(references), -1), 2)  # (M, D)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries and references must have the same size per item, got {q.shape[1]} and {r.shape[1]}")
    return torch.cat([torch.cdist(chunk, r).min(1).values for chunk in q.split(batch_size)])


def saturation(images: torch.Tensor) -> float:
    """Mean HSV saturation (max - min) / max of RGB images (B, 3, H, W) in [-1, 1], clamped first (Smith 1978)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be RGB, shape (B, 3, H, W), got {getattr(images, 'shape', type(images))}")
    rgb = ((images.to(torch.float64) + 1) / 2).clamp(0, 1)
    high, low = rgb.amax(1), rgb.amin(1)  # (B, H, W)
    return float(torch.where(high > 0, (high - low) / high.clamp_min(1e-12), 0.0).mean())


def clipping_fraction(images: torch.Tensor, *, tolerance: float = 1 / 255) -> float:
    """Fraction of values at the range limits, x <= -1 + tolerance or x >= 1 - tolerance (default: 8-bit 0 or 255)."""
    if not isinstance(images, torch.Tensor) or images.numel() == 0:
        raise ValueError(f"images must be a non-empty tensor, got {getattr(images, 'shape', type(images))}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a number in [0, 1), got {tolerance!r}")
    x = images.to(torch.float64)
    return float(((x <= -1 + tolerance) | (x >= 1 - tolerance)).double().mean())


# ----------------------------------------------------------------------------- diagnostics (chapter 7)


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels per image, (B,) float64 (white noise of std s adds 2 s^2)."""
    x = check_images("images", images, min_size=2).detach().to("cpu", torch.float64)  # 2 x 2: neighbours
    dx = x[..., :, 1:] - x[..., :, :-1]  # (B, C, H, W - 1)
    dy = x[..., 1:, :] - x[..., :-1, :]  # (B, C, H - 1, W)
    total = dx.pow(2).flatten(1).sum(1) + dy.pow(2).flatten(1).sum(1)  # (B,)
    return total / (dx[0].numel() + dy[0].numel())


def residual_noise_std(images: torch.Tensor, reference: torch.Tensor) -> float:
    """The white-noise std s that explains the excess gradient energy over references, sqrt(max(0, excess) / 2)."""
    excess = float(gradient_energy(images).mean() - gradient_energy(reference).mean())
    return (max(excess, 0.0) / 2) ** 0.5


def rms_contrast(images: torch.Tensor) -> torch.Tensor:
    """The standard deviation of each image's values over (C, H, W), (B,) float64: RMS contrast (Peli 1990)."""
    x = check_images("images", images, min_size=2).detach().to("cpu", torch.float64)  # 2 x 2: neighbours
    return x.flatten(1).std(1, unbiased=False)


class FiniteTrace:
    """A sampler callback recording, per step, the fraction of finite values of x and of x0_hat (``denoised``)."""

    def __init__(self) -> None:
        self.sigmas: list[float] = []
        self.finite_x: list[float] = []
        self.finite_denoised: list[float] = []

    def __call__(self, *, x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor, **_: Any) -> None:
        """Record one step (the callback signature of the samplers: x, i, sigma, sigma_next, denoised)."""
        self.sigmas.append(float(sigma))
        self.finite_x.append(float(torch.isfinite(x).double().mean()))
        self.finite_denoised.append(float(torch.isfinite(denoised).double().mean()))

    def first_nonfinite_step(self) -> int | None:
        """The index of the first step whose x or x0_hat holds an inf or NaN, None if every step was finite."""
        for i, (fx, fd) in enumerate(zip(self.finite_x, self.finite_denoised)):
            if fx < 1 or fd < 1:
                return i
        return None


def batch_discrepancy(sample_fn: Callable[[Sequence[int]], torch.Tensor], seeds: Sequence[int]) -> float:
    """max_i |sample_fn(seeds)[i] - sample_fn([seeds[i]])[0]|: 0 when each sample depends on its own seed only."""
    if (
        isinstance(seeds, (int, str, torch.Tensor))
        or len(seeds) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ValueError(
            f"seeds must be a sequence of at least 2 ints (a batch to compare with its samples alone), got {seeds!r}"
        )
    batched = sample_fn(list(seeds))
    if not isinstance(batched, torch.Tensor) or batched.shape[0] != len(seeds):
        raise ValueError(
            f"sample_fn must return a tensor (B, ...) with B = len(seeds) = {len(seeds)}, got "
            f"{getattr(batched, 'shape', type(batched).__name__)}"
        )
    alone = torch.cat([sample_fn([seed]) for seed in seeds])  # (B, ...)
    return float((batched.double() - alone.double()).abs().max())
