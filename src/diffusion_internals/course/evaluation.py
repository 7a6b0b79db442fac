"""Scoring generated classes: one scorer for digits-FID, class accuracy and colour measures, used everywhere.

:func:`score` judges samples of requested classes with the course classifier of their data set
(:mod:`diffusion_internals.course.checkpoints`):

* ``fid``: the Frechet distance of the classifier's penultimate features to those of the test split
  ("digits-FID", Heusel et al. 2017; :mod:`diffusion_internals.course.metrics`);
* ``accuracy``: how often the classifier finds the requested class;
* ``class_histogram_max_deviation``: the largest gap between a class's share of the classifier's
  predictions and 1/K, which unconditional sampling (guidance scale 0) should keep small;
* for RGB images, ``saturation`` and ``clipping_fraction``.

The samples are clipped to [-1, 1] first, as a viewer shows them. The classifier and the test split's
features are computed once per data set and process.

:func:`evaluate` scores a class-conditional model at several ``guidance_scale`` values (``0`` = unconditional,
``1`` = conditional, no guidance): the same number of samples of every class, drawn with the package's
DDIM sampler (Song et al. 2021) around ``CFGDenoiser`` (Ho & Salimans 2021) by :func:`sample_classes`.

The grid follows the model's family (:func:`default_schedule`): the "leading" timesteps of a
``DiscreteDenoiser`` (diffusers' DDIM spacing), the rectified-flow grid of a ``FlowDenoiser`` (shift 1,
t from 1 to 0; DDIM at eta 0 in the sigma view is then exactly the flow-matching Euler step) and the
Karras grid of an ``EDMDenoiser`` (its sigma_min to sigma_max, rho 7; Karras et al. 2022, eq. 5).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from diffusion_internals.course.checkpoints import CLASSIFIERS, load_classifier
from diffusion_internals.course.data import load_dataset
from diffusion_internals.course.metrics import (
    clipping_fraction,
    extract_features,
    frechet_distance,
    frechet_distance_interval,
    saturation,
)
from diffusion_internals.course.models import null_label
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.flow import FlowDenoiser
from diffusion_internals.guidance import CFGDenoiser
from diffusion_internals.preconditioning import EDMDenoiser
from diffusion_internals.sampling import sample
from diffusion_internals.validation import check_int

__all__ = ["default_schedule", "sample_classes", "reference_features", "score", "fid_half_width", "evaluate"]

Denoisers = DiscreteDenoiser | FlowDenoiser | EDMDenoiser


def default_schedule(denoiser: Denoisers) -> str:
    """The grid a model's family samples on: "flow" (Esser 2024), "karras" (Karras 2022, eq. 5), else "leading"."""
    if isinstance(denoiser, FlowDenoiser):
        return "flow"
    if isinstance(denoiser, EDMDenoiser):
        return "karras"
    return "leading"  # diffusers' DDIM spacing (Song et al. 2021), the committed diffusion models' metrics


def _describe_grid(denoiser: Denoisers, schedule: str) -> str:
    """The grid as evaluate() reports it in results["sampler"]."""
    if schedule == "flow":
        return "flow grid, shift 1 (t from 1 to 0: DDIM at eta 0 is the flow-matching Euler step)"
    if schedule == "karras":
        return f"karras grid, sigma {denoiser.sigma_min:g} to {denoiser.sigma_max:g}, rho 7"
    return f"{schedule} spacing"


def sample_classes(
    denoiser: Denoisers,
    labels: torch.Tensor,
    *,
    guidance_scale: float,
    steps: int = 50,
    sampler: str = "ddim",
    schedule: str | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    **fixes: Any,
) -> torch.Tensor:
    """Unclipped samples (B, C, H, W) of labels (B,), DDIM with CFG at guidance_scale (Ho & Salimans 2021).

    `schedule` None is the grid of the model's family (:func:`default_schedule`).
    `fixes` are CFGDenoiser's keyword options (rescale=, threshold=, interval=, apg=, ...).
    """
    model = denoiser.model
    null = null_label(model)
    if null is None:
        raise ValueError("denoiser.model must be class-conditional (a num_class_embeds config entry)")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 tensor of shape (B,), got {getattr(labels, 'shape', labels)}")
    device = next(model.parameters()).device  # the sampler's state lives where the network runs
    guided = CFGDenoiser(
        denoiser, guidance_scale, uncond={"class_labels": torch.tensor([null], device=device)}, **fixes
    )
    shape = (len(labels), model.config.in_channels, model.config.sample_size, model.config.sample_size)
    return sample(
        guided,
        shape,
        sampler=sampler,
        steps=steps,
        schedule=default_schedule(denoiser) if schedule is None else schedule,
        generator=generator,
        device=device,
        extra_args={"class_labels": labels.to(device)},
        progress=progress,
    ).cpu()


def _check_dataset(dataset: str) -> str:
    if not isinstance(dataset, str) or dataset not in CLASSIFIERS:
        raise ValueError(
            f"dataset must be one of {list(CLASSIFIERS)} (the data sets with a course classifier), got {dataset!r}"
        )
    return dataset


@functools.cache
def _judge(dataset: str) -> tuple[torch.nn.Module, torch.Tensor, tuple[int, ...]]:
    """The committed classifier of a data set, its features of the test split (360, D) and the image shape (C, H, W)."""
    classifier = load_classifier(dataset)
    images = load_dataset(dataset, split="test").images  # (360, C, H, W)
    return classifier, extract_features(images, classifier.features), tuple(images.shape[1:])


def reference_features(dataset: str) -> torch.Tensor:
    """The course classifier's penultimate features (N, D) of the test split: the reference of digits-FID."""
    return _judge(_check_dataset(dataset))[1].clone()


def _features(samples: torch.Tensor, labels: torch.Tensor, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) of the clipped samples, reference features) after checking samples and labels for score()."""
    classifier, reference, image_shape = _judge(_check_dataset(dataset))
    if (
        not isinstance(samples, torch.Tensor)
        or samples.ndim != 4
        or len(samples) < 2
        or not samples.dtype.is_floating_point
        or tuple(samples.shape[1:]) != image_shape
    ):
        got = f"shape {tuple(samples.shape)}, dtype {samples.dtype}" if isinstance(samples, torch.Tensor) else samples
        raise ValueError(
            f"samples must be a floating-point tensor (N, {', '.join(map(str, image_shape))}) with N >= 2 (FID fits "
            f"a covariance; C, H, W of the {dataset} test split), got {got}"
        )
    num_classes = classifier.config.num_classes
    if (
        not isinstance(labels, torch.Tensor)
        or labels.shape != (len(samples),)
        or labels.is_floating_point()
        or labels.dtype == torch.bool
        or not bool(((labels >= 0) & (labels < num_classes)).all())
    ):
        got = (
            f"shape {tuple(labels.shape)}, values {labels.tolist()[:8]}" if isinstance(labels, torch.Tensor) else labels
        )
        raise ValueError(
            f"labels must be an integer tensor of shape ({len(samples)},) (one per sample) with values in "
            f"[0, {num_classes - 1}], got {got}"
        )
    if bool(samples.isnan().any()):  # inf is clipped to +-1 below; NaN has no value to show
        raise ValueError(f"samples must not contain NaN, got {int(samples.isnan().sum())} NaN values")
    # What a viewer shows, on the classifier's device and in its dtype (samples may come from a float16 GPU run).
    clipped = samples.to(device=classifier.device, dtype=classifier.dtype).clamp(-1, 1)
    return extract_features(clipped, classifier.features), reference  # (N, D), the penultimate layer: one pass


@torch.no_grad()
def score(samples: torch.Tensor, labels: torch.Tensor, dataset: str) -> dict[str, float]:
    """digits-FID to the test split, class accuracy and histogram, RGB saturation and clipping (Heusel et al. 2017)."""
    features, reference = _features(samples, labels, dataset)
    classifier = _judge(dataset)[0]
    num_classes = classifier.config.num_classes
    predicted = classifier.head(features).argmax(1).cpu()  # (N,) from logits (N, K) = classifier(clipped samples)
    shares = torch.bincount(predicted, minlength=num_classes).double() / len(predicted)  # (K,)
    result = {
        "accuracy": float((predicted == labels.cpu()).double().mean()),
        "class_histogram_max_deviation": float((shares - 1 / num_classes).abs().max()),
        "fid": frechet_distance(features, reference),
    }
    if samples.shape[1] == 3:  # the colour measures read the unclipped samples (clipping_fraction counts them)
        result.update(saturation=saturation(samples), clipping_fraction=clipping_fraction(samples))
    return result


@torch.no_grad()
def fid_half_width(samples: torch.Tensor, labels: torch.Tensor, dataset: str, *, confidence: float = 0.9) -> float:
    """Half the width of the FID's bootstrap interval, samples resampled within classes (Efron & Tibshirani 1993)."""
    features, reference = _features(samples, labels, dataset)  # (N, D), as score() computes them
    _, high = frechet_distance_interval(features, reference, confidence=confidence, strata=labels.cpu())
    return high - frechet_distance(features, reference)


@torch.no_grad()
def evaluate(
    denoiser: Denoisers,
    dataset: str,
    *,
    guidance_scales: Sequence[float] = (0.0, 1.0, 3.0, 7.0),
    per_class: int = 50,
    steps: int = 50,
    schedule: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """score() of samples at each guidance scale from a fixed seed, with the train split's FID as the floor.

    DDIM at eta 0 on `schedule`, None for the grid of the model's family (:func:`default_schedule`).
    """
    check_int("per_class", per_class, minimum=1)
    _check_dataset(dataset)
    schedule = default_schedule(denoiser) if schedule is None else schedule
    test = load_dataset(dataset, split="test")
    train = load_dataset(dataset, split="train")
    labels = torch.arange(test.num_classes).repeat_interleave(per_class)  # (K * per_class,)
    results: dict[str, Any] = {
        "sampler": f"ddim, eta 0, {steps} steps, {_describe_grid(denoiser, schedule)}, seed {seed}, "
        f"{per_class} samples per class",
        "classifier": f"{dataset} classifier (checkpoints/{CLASSIFIERS[dataset]})",
        "fid_reference": f"{dataset} test split ({len(test.labels)} images), classifier penultimate features",
        # The floor to compare with: the training split against the test split, same features.
        "fid_train_split": round(score(train.images, train.labels, dataset)["fid"], 4),
    }
    for guidance_scale in guidance_scales:
        samples = sample_classes(
            denoiser,
            labels,
            guidance_scale=float(guidance_scale),
            steps=steps,
            schedule=schedule,
            generator=torch.Generator().manual_seed(seed),
            progress=progress,
        )
        entry = score(samples, labels, dataset)
        results[f"guidance_{guidance_scale:g}"] = {k: round(v, 4) for k, v in entry.items()}
    if test.images.shape[1] == 3:
        results["test_split"] = {
            "saturation": round(saturation(test.images), 4),
            "clipping_fraction": round(clipping_fraction(test.images), 4),
        }
    return results
