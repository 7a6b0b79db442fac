"""Measures that tell generation failures apart: sharpness and residual noise, contrast, finiteness, batch invariance.

Each answers one question of the field guide (chapter 7) with a number that can be compared with the data:

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

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["gradient_energy", "residual_noise_std", "rms_contrast", "FiniteTrace", "batch_discrepancy"]


def _check_images(name: str, images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0 \
            or not images.dtype.is_floating_point:
        got = f"shape {tuple(images.shape)}, dtype {images.dtype}" if isinstance(images, torch.Tensor) \
            else type(images).__name__
        raise ValueError(f"{name} must be a non-empty floating-point tensor (B, C, H, W), got {got}")
    if images.shape[2] < 2 or images.shape[3] < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels to have neighbours, got {tuple(images.shape)}")
    return images.detach().to("cpu", torch.float64)


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of horizontal and vertical neighbours per image, (B,) float64 (white noise of std s adds 2 s^2)."""
    x = _check_images("images", images)
    dx = x[..., :, 1:] - x[..., :, :-1]  # (B, C, H, W - 1)
    dy = x[..., 1:, :] - x[..., :-1, :]  # (B, C, H - 1, W)
    total = dx.pow(2).flatten(1).sum(1) + dy.pow(2).flatten(1).sum(1)  # (B,)
    return total / (dx[0].numel() + dy[0].numel())


def residual_noise_std(images: torch.Tensor, reference: torch.Tensor) -> float:
    """The white-noise std s that explains the excess mean gradient energy of images over reference, sqrt(max(0, excess) / 2)."""
    excess = float(gradient_energy(images).mean() - gradient_energy(reference).mean())
    return (max(excess, 0.0) / 2) ** 0.5


def rms_contrast(images: torch.Tensor) -> torch.Tensor:
    """The standard deviation of each image's values over (C, H, W), (B,) float64: RMS contrast (Peli 1990)."""
    x = _check_images("images", images)
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
    if isinstance(seeds, (int, str, torch.Tensor)) or len(seeds) < 2 or \
            not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a sequence of at least 2 ints (a batch to compare with its samples "
                         f"alone), got {seeds!r}")
    batched = sample_fn(list(seeds))
    if not isinstance(batched, torch.Tensor) or batched.shape[0] != len(seeds):
        raise ValueError(f"sample_fn must return a tensor (B, ...) with B = len(seeds) = {len(seeds)}, got "
                         f"{getattr(batched, 'shape', type(batched).__name__)}")
    alone = torch.cat([sample_fn([seed]) for seed in seeds])  # (B, ...)
    return float((batched.double() - alone.double()).abs().max())
