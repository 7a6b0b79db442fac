"""UpsampledDenoiser against the exact Gaussian posterior of upsampled data, computed with linear algebra.

Data: 2x2 images with iid N(m, s^2) pixels, upsampled to 6x6 by repeating each pixel 3x3 times, so
x0 ~ N(m, s^2 U U^T) with U the (36, 4) repetition matrix. The exact denoiser of x = x0 + sigma eps is
E[x0 | x] = m + C (C + sigma^2 I)^-1 (x - m) with C = s^2 U U^T (Tweedie; a Gaussian conditional).
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_internals.denoisers import GaussianDenoiser, UpsampledDenoiser

MEAN, STD, FACTOR = 0.2, 0.7, 3


def repetition_matrix() -> torch.Tensor:
    """U (36, 4): pixel (i, j) of the 6x6 image copies pixel (i // 3, j // 3) of the 2x2 one."""
    u = torch.zeros(36, 4, dtype=torch.float64)
    for i in range(6):
        for j in range(6):
            u[6 * i + j, 2 * (i // FACTOR) + j // FACTOR] = 1.0
    return u


@pytest.mark.parametrize("sigma", [0.05, 0.8, 6.0])
def test_matches_the_exact_gaussian_posterior(sigma):
    u = repetition_matrix()
    cov = STD**2 * u @ u.T  # (36, 36)
    x = MEAN + 2 * torch.randn(5, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = MEAN + (cov @ torch.linalg.solve(cov + sigma**2 * torch.eye(36, dtype=torch.float64), (x - MEAN).T)).T
    ours = UpsampledDenoiser(GaussianDenoiser(MEAN, STD), FACTOR)(x.reshape(5, 1, 6, 6), sigma)
    torch.testing.assert_close(ours.reshape(5, 36), exact, rtol=1e-10, atol=1e-10)


def test_pure_noise_and_bad_shapes():
    denoiser = UpsampledDenoiser(GaussianDenoiser(MEAN, STD), FACTOR)
    z = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(denoiser(z, math.inf), torch.full_like(z, MEAN))
    with pytest.raises(ValueError, match="multiples of factor=3"):
        denoiser(torch.zeros(2, 1, 5, 6), 1.0)
    with pytest.raises(ValueError, match="factor"):
        UpsampledDenoiser(GaussianDenoiser(MEAN, STD), 0)
