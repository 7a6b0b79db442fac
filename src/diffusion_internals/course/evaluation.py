"""Scoring a class-conditional model: samples at several guidance scales, judged by the course classifier.

For each guidance scale ``w`` (``0`` = unconditional, ``1`` = conditional, no guidance), draw the same
number of samples of every class with the package's DDIM sampler (Song et al. 2021) around
``CFGDenoiser`` (Ho & Salimans 2022) and report

* ``accuracy``: how often the classifier finds the requested class (at ``w = 0`` the labels are
  ignored, so it is chance, 0.1);
* ``class_histogram_max_deviation``: the largest gap between a class's share of the classifier's
  predictions and 1/K, which is what ``w = 0`` should keep small;
* ``fid``: the Frechet distance of classifier features to the test split ("digits-FID");
* for RGB images, ``saturation`` and ``clipping_fraction`` (:mod:`diffusion_internals.course.metrics`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from diffusion_internals.course.checkpoints import load_classifier
from diffusion_internals.course.data import load_dataset
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.guidance import CFGDenoiser
from diffusion_internals.course.metrics import (
    classifier_accuracy,
    clipping_fraction,
    extract_features,
    frechet_distance,
    saturation,
)
from diffusion_internals.course.models import null_label
from diffusion_internals.sampling import sample

__all__ = ["sample_classes", "evaluate"]


def sample_classes(denoiser: DiscreteDenoiser, labels: torch.Tensor, *, guidance: float, steps: int = 50,
                   sampler: str = "ddim", schedule: str = "leading", generator: torch.Generator | None = None,
                   progress: bool = False, **fixes: Any) -> torch.Tensor:
    """Samples (B, C, H, W) of the given labels (B,) with CFG at scale `guidance`, unclipped (Ho & Salimans 2022; Song et al. 2021).

    `fixes` are CFGDenoiser's keyword options (rescale=, threshold=, interval=, apg=, ...).
    """
    model = denoiser.model
    null = null_label(model)
    if null is None:
        raise ValueError("denoiser.model must be class-conditional (a num_class_embeds config entry)")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 tensor of shape (B,), got {getattr(labels, 'shape', labels)}")
    guided = CFGDenoiser(denoiser, guidance, uncond={"class_labels": torch.tensor([null])}, **fixes)
    shape = (len(labels), model.config.in_channels, model.config.sample_size, model.config.sample_size)
    return sample(guided, shape, sampler=sampler, steps=steps, schedule=schedule, generator=generator,
                  extra_args={"class_labels": labels}, progress=progress)


@torch.no_grad()
def evaluate(denoiser: DiscreteDenoiser, dataset: str, *, guidance_scales: Sequence[float] = (0.0, 1.0, 3.0, 7.0),
             per_class: int = 50, steps: int = 50, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Accuracy, class histogram, digits-FID (and colour measures) of samples at each guidance scale, with a fixed seed."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    classifier = load_classifier(dataset)
    test = load_dataset(dataset, split="test")
    reference = extract_features(test.images, classifier.features)
    labels = torch.arange(test.num_classes).repeat_interleave(per_class)  # (K * per_class,)
    results: dict[str, Any] = {
        "sampler": f"ddim, eta 0, {steps} steps, leading spacing, seed {seed}, {per_class} samples per class",
        "classifier": f"{dataset} classifier (checkpoints/{dataset.replace('_', '-')}-classifier)",
        "fid_reference": f"{dataset} test split ({len(test.labels)} images), classifier penultimate features",
        # The floor to compare with: the training split against the test split, same features.
        "fid_train_split": round(frechet_distance(
            extract_features(load_dataset(dataset, split="train").images, classifier.features), reference), 4),
    }
    for scale in guidance_scales:
        samples = sample_classes(denoiser, labels, guidance=float(scale), steps=steps,
                                 generator=torch.Generator().manual_seed(seed), progress=progress)
        clipped = samples.clamp(-1, 1)
        predicted = extract_features(clipped, classifier).argmax(1)  # (N,)
        shares = torch.bincount(predicted, minlength=test.num_classes).double() / len(predicted)
        entry = {
            "accuracy": classifier_accuracy(clipped, labels, classifier),
            "class_histogram_max_deviation": float((shares - 1 / test.num_classes).abs().max()),
            "fid": frechet_distance(extract_features(clipped, classifier.features), reference),
        }
        if samples.shape[1] == 3:
            entry.update(saturation=saturation(samples), clipping_fraction=clipping_fraction(samples))
        results[f"guidance_{scale:g}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}
    if test.images.shape[1] == 3:
        results["test_split"] = {"saturation": round(saturation(test.images), 4),
                                 "clipping_fraction": round(clipping_fraction(test.images), 4)}
    return results
