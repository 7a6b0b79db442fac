"""DDPM and DDIM written in the variance-exploding (sigma) view, on any sigma grid.

A variance-preserving sample x_VP = sqrt(abar) x0 + sqrt(1 - abar) eps becomes x = x_VP / sqrt(abar)
= x0 + sigma eps with sigma^2 = (1 - abar) / abar, i.e. abar = 1 / (1 + sigma^2). Write sigma, abar for
step t and sigma', abar' for step t - 1, and eps_hat = (x - x0_hat) / sigma.

DDIM (Song et al. 2021, eq. 12), divided by sqrt(abar'):
    x' = x0_hat + sqrt((1 - abar' - s_t^2) / abar') eps_hat + (s_t / sqrt(abar')) z,
with eq. 16's s_t = eta sqrt((1 - abar') / (1 - abar)) sqrt(1 - abar / abar'). Substituting abar:
    (1 - abar') / abar' = sigma'^2,   1 - abar = sigma^2 / (1 + sigma^2),
    1 - abar / abar' = (sigma^2 - sigma'^2) / (1 + sigma^2),
so s_t^2 / abar' = eta^2 sigma'^2 (sigma^2 - sigma'^2) / sigma^2 = sigma_up^2 and the eps_hat coefficient is
sqrt(sigma'^2 - sigma_up^2) = sigma_down: exactly ``ancestral_step(sigma, sigma', eta)``. So
    x' = x0_hat + sigma_down eps_hat + sigma_up z,
which is also x + (sigma_down - sigma) (x - x0_hat) / sigma + sigma_up z: an Euler step to sigma_down plus
noise, the Euler ancestral sampler; with eta = 0 it is a plain Euler step.

DDPM (Ho et al. 2020, eqs. 6-7): dividing x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) n by sqrt(abar_t)
gives the VE chain x = x' + sqrt(sigma^2 - sigma'^2) n, and with x' | x0 ~ N(x0, sigma'^2 I) the
posterior q(x' | x, x0) is Gaussian with
    mean = (sigma'^2 x + (sigma^2 - sigma'^2) x0) / sigma^2 = x0 + (sigma'^2 / sigma) eps,
    variance = sigma'^2 (sigma^2 - sigma'^2) / sigma^2   (beta-tilde, the "fixed_small" choice, divided by abar').
Ancestral sampling plugs in x0_hat. The variance is sigma_up^2 at eta = 1, and sigma'^2 / sigma =
sqrt(sigma'^2 - sigma_up^2) = sigma_down: DDPM is DDIM with eta = 1. The tests check both identities.

Which sigma grid reproduces the discrete timesteps of a trained model is the caller's choice
(``schedules.sigmas_from_timesteps``); these functions take any grid.
"""

from __future__ import annotations

import torch

from diffusion_internals.samplers.common import Callback, Denoiser, NoiseSampler, ancestral_step, noise_up, sampler

__all__ = ["sample_ddim", "sample_ddpm"]


@sampler(at_infinity=lambda options: min(1.0, options["eta"]))  # sigma_up / sigma_next as sigma -> inf
def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM, x' = x0_hat + sigma_down eps_hat + sigma_up z (Song et al. 2021, eqs. 12 and 16, in the sigma view)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoiser(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        eps_hat = (x - x0_hat) / sigma
        x = noise_up(x0_hat + sigma_down * eps_hat, sigma_up, noise, sigma, sigma_next)
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=x0_hat)
    return x


@sampler(at_infinity=lambda options: 1.0)  # the posterior at sigma = inf: N(x0_hat, sigma_next^2 I)
def sample_ddpm(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback: Callback, noise: NoiseSampler
) -> torch.Tensor:
    """DDPM: sample the posterior q(x' | x, x0_hat) with variance beta-tilde (Ho et al. 2020, Algorithm 2, eqs. 6-7)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoiser(x, sigma)
        mean = (sigma_next**2 * x + (sigma**2 - sigma_next**2) * x0_hat) / sigma**2
        if sigma_next == 0:
            x = mean  # the posterior at sigma' = 0 is a point mass at x0_hat
        else:
            std = sigma_next * (sigma**2 - sigma_next**2) ** 0.5 / sigma
            x = mean + std * noise(sigma, sigma_next)
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=x0_hat)
    return x
