"""The course's training data: 2-D toy distributions, scikit-learn's digits, colour digits, CIFAR-10.

Images are float32 tensors ``(N, C, H, W)`` in ``[-1, 1]`` (the range DDPM trains on, Ho et al. 2020,
Sec. 3.3) with int64 labels ``(N,)``, returned as :class:`ImageData` by :func:`load_dataset`.

* ``digits``: scikit-learn's bundled ``load_digits`` (1797 grey 8x8 images of 0-9, 17 grey levels),
  ``x = 2 * pixel / 16 - 1``. The split is fixed: stratified 80/20 by class with
  ``sklearn.model_selection.train_test_split(..., test_size=0.2, stratify=labels, random_state=0)``,
  1437 training and 360 test images.
* ``colour_digits``: an RGB 16x16 variant of the same images, labels and split, made
  deterministically: the stroke mask ``m`` is the 8x8 image / 16 upsampled bilinearly to 16x16; a
  ``torch.Generator`` seeded with 0 draws six uniforms per image over all 1797 images at once, giving
  for image ``i`` of class ``k`` stroke HSV = ((k / 10 + U(-0.03, 0.03)) mod 1, U(0.75, 1), U(0.85, 1))
  and background HSV = (U(0, 1), U(0.2, 0.5), U(0.1, 0.35)); the pixel is
  ``(1 - m) * background + m * stroke``. Strokes of one class share a hue, so guidance that pushes
  colour too far (over-saturation, hue shifts) shows at once; saturated strokes come within 0.3% of the
  range limits in the data.
* ``cifar10``: the standard python-pickle batches from a local folder; never downloaded.
* 2-D toys (:data:`TOY_2D`): fresh points from a ``torch.Generator``, for the MLP of chapter 2.
"""

from __future__ import annotations

import math
import os
import pickle
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from diffusion_internals.validation import check_choice, check_int

__all__ = [
    "ImageData",
    "DATASETS",
    "SPLITS",
    "TOY_2D",
    "CIFAR10_ENV",
    "load_dataset",
    "digits",
    "colour_digits",
    "colour_digits_hsv",
    "colourise",
    "cifar10",
    "hsv_to_rgb",
    "toy_2d",
    "swiss_roll",
    "two_moons",
    "eight_gaussians",
    "checkerboard",
]

SPLITS = ("train", "test")
DIGITS_SPLIT_SEED = 0  # random_state of the stratified 80/20 split
COLOUR_SEED = 0  # seed of the colours drawn by colour_digits
CIFAR10_ENV = "DIFFUSION_INTERNALS_CIFAR10"  # a folder holding data_batch_1..5 and test_batch


class ImageData(NamedTuple):
    """Images (N, C, H, W) float32 in [-1, 1], labels (N,) int64 and the number of classes."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int


def _check_split(split: str) -> str:
    check_choice("split", split, SPLITS)
    return split


# ----------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """scikit-learn's digits (1797, 8, 8) in 0..16, labels, and the fixed stratified split's indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    index = np.arange(len(bunch.target))
    train, test = train_test_split(index, test_size=0.2, stratify=bunch.target, random_state=DIGITS_SPLIT_SEED)
    return bunch.images, bunch.target, {"train": np.sort(train), "test": np.sort(test)}


def digits(split: str = "train") -> ImageData:
    """scikit-learn's 8x8 digits scaled to [-1, 1], shape (N, 1, 8, 8), fixed stratified 80/20 split (seed 0)."""
    images, labels, splits = _digits_arrays()
    index = splits[_check_split(split)]
    x = torch.from_numpy(images[index]).to(torch.float32).unsqueeze(1) * (2 / 16) - 1  # (N, 8, 8) -> (N, 1, 8, 8)
    return ImageData(x, torch.from_numpy(labels[index]).to(torch.int64), 10)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] to RGB in [0, 1] along the last axis, f(n) = v - v s max(0, min(k, 4 - k, 1)) (Smith 1978)."""
    h, s, v = hsv.unbind(-1)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device)  # R, G, B
    k = (n + h.unsqueeze(-1) * 6) % 6  # (..., 3)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * ramp


def colour_digits_hsv(
    labels: torch.Tensor, *, generator: torch.Generator | None = None, class_hue: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stroke and background HSV (N, 3) float64 of colour digits; class_hue=False draws the stroke hue uniformly."""
    u = torch.rand(len(labels), 6, generator=generator, dtype=torch.float64)  # (N, 6): 3 stroke + 3 background
    hue = (labels.to(torch.float64) / 10 + 0.06 * u[:, 0] - 0.03) % 1 if class_hue else u[:, 0]
    stroke = torch.stack([hue, 0.75 + 0.25 * u[:, 1], 0.85 + 0.15 * u[:, 2]], -1)
    background = torch.stack([u[:, 3], 0.2 + 0.3 * u[:, 4], 0.1 + 0.25 * u[:, 5]], -1)
    return stroke, background


def colourise(
    grey: torch.Tensor, stroke_hsv: torch.Tensor, background_hsv: torch.Tensor, *, size: int = 16
) -> torch.Tensor:
    """(1 - m) background + m stroke, m = grey (N, 1, h, w) in [0, 1], upsampled: (N, 3, size, size) in [-1, 1]."""
    mask = (grey.to(torch.float64) + 1) / 2  # (N, 1, h, w) in [0, 1]
    mask = torch.nn.functional.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    stroke, background = hsv_to_rgb(stroke_hsv), hsv_to_rgb(background_hsv)  # (N, 3) each
    rgb = (1 - mask) * background[:, :, None, None] + mask * stroke[:, :, None, None]  # (N, 3, size, size)
    return (rgb * 2 - 1).to(torch.float32)


def colour_digits(split: str = "train") -> ImageData:
    """RGB 16x16 digits in [-1, 1], strokes hued by class on dark random hues (seed 0; see the module docstring)."""
    _, labels, splits = _digits_arrays()
    # The colours are drawn for all 1797 images at once, so an image's colours do not depend on the split.
    stroke, background = colour_digits_hsv(
        torch.from_numpy(labels), generator=torch.Generator().manual_seed(COLOUR_SEED)
    )
    index = torch.from_numpy(splits[_check_split(split)])
    grey = digits(split).images  # (N, 1, 8, 8), the same images in the same order
    return ImageData(colourise(grey, stroke[index], background[index]), torch.from_numpy(labels[index.numpy()]), 10)


# ----------------------------------------------------------------------------- CIFAR-10


def _cifar10_folder(root: str | os.PathLike | None) -> Path:
    """The folder of the python-pickle batches: root, root/cifar-10-batches-py (torchvision's) or $CIFAR10_ENV."""
    if root is None:
        root = os.environ.get(CIFAR10_ENV)
    if root is None:
        raise FileNotFoundError(
            f"CIFAR-10 is not bundled with the course: pass root=<folder> or set {CIFAR10_ENV} to the folder "
            f"holding the python-pickle batches (data_batch_1 ... data_batch_5, test_batch), e.g. the "
            f"cifar-10-batches-py folder of https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz or the root "
            f"torchvision.datasets.CIFAR10 downloaded into"
        )
    for folder in (Path(root), Path(root) / "cifar-10-batches-py"):
        if (folder / "test_batch").is_file():
            return folder
    raise FileNotFoundError(
        f"no CIFAR-10 python-pickle batches in {root} (looked for test_batch there and in its "
        f"cifar-10-batches-py subfolder)"
    )


def cifar10(split: str = "train", *, root: str | os.PathLike | None = None) -> ImageData:
    """CIFAR-10 (Krizhevsky 2009) from local python-pickle batches, (N, 3, 32, 32) in [-1, 1]; never downloads."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if _check_split(split) == "train" else ["test_batch"]
    folder = _cifar10_folder(root)
    images, labels = [], []
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {name} is missing from {folder}")
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))  # rows of 3072 bytes
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(images)).to(torch.float32) * (2 / 255) - 1
    return ImageData(x, torch.from_numpy(np.concatenate(labels)), 10)


DATASETS = {"digits": digits, "colour_digits": colour_digits, "cifar10": cifar10}


def load_dataset(name: str, *, split: str = "train", root: str | os.PathLike | None = None) -> ImageData:
    """An image data set of DATASETS by name; root is only used by cifar10."""
    check_choice("name", name, DATASETS)
    if name == "cifar10":
        return cifar10(split, root=root)
    if root is not None:
        raise ValueError(f"root is only used by name='cifar10'; got root={root!r} with name={name!r}")
    return DATASETS[name](split)


# ----------------------------------------------------------------------------- 2-D toys


def swiss_roll(n: int, *, generator: torch.Generator | None = None, noise: float = 0.1) -> torch.Tensor:
    """(n, 2) points on the spiral r = theta / 5, theta ~ U(1.5 pi, 4.5 pi), plus N(0, noise^2) (make_swiss_roll)."""
    theta = 1.5 * math.pi * (1 + 2 * torch.rand(check_int("n", n, minimum=1), generator=generator))  # (n,)
    points = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], dim=1) / 5  # (n, 2)
    return points + noise * torch.randn(n, 2, generator=generator)


def two_moons(n: int, *, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """(n, 2) points on two interleaved unit half-circles about the origin, plus N(0, noise^2) (make_moons)."""
    upper = torch.rand(check_int("n", n, minimum=1), generator=generator) < 0.5  # which moon, (n,)
    angle = math.pi * torch.rand(n, generator=generator)
    first = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # centre (0, 0)
    second = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)  # centre (1, 0.5)
    points = torch.where(upper[:, None], first, second) - torch.tensor([0.5, 0.25])  # centred
    return points + noise * torch.randn(n, 2, generator=generator)


def eight_gaussians(
    n: int, *, generator: torch.Generator | None = None, radius: float = 2.0, std: float = 0.1
) -> torch.Tensor:
    """(n, 2) draws from 8 equal-weight N(m_k, std^2 I), m_k = radius (cos, sin)(2 pi k / 8) (Grathwohl et al. 2019)."""
    k = torch.randint(0, 8, (check_int("n", n, minimum=1),), generator=generator)
    angle = 2 * math.pi * k / 8
    means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
    return means + std * torch.randn(n, 2, generator=generator)


def checkerboard(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2) uniform points on the 8 squares of a 4x4 board on [-2, 2]^2, col + row even (Grathwohl et al. 2019)."""
    col = torch.randint(0, 4, (check_int("n", n, minimum=1),), generator=generator)
    row = 2 * torch.randint(0, 2, (n,), generator=generator) + col % 2  # same parity as col
    corner = torch.stack([col, row], dim=1).to(torch.float32) - 2  # (n, 2), lower-left corner
    return corner + torch.rand(n, 2, generator=generator)


TOY_2D = {
    "swiss_roll": swiss_roll,
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}


def toy_2d(name: str, n: int, *, generator: torch.Generator | None = None, **options: float) -> torch.Tensor:
    """n points of a 2-D toy distribution of TOY_2D by name, (n, 2) float32; options go to its function."""
    check_choice("name", name, TOY_2D)
    return TOY_2D[name](n, generator=generator, **options)
