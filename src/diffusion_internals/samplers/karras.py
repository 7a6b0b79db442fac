"""Samplers of Karras et al. (2022): Euler, Heun and DPM-2 on the probability-flow ODE, with optional churn.

The ODE is dx/dsigma = (x - D(x, sigma)) / sigma (``to_d``). "Churn" (Algorithm 2) first raises the
noise level of x from sigma to sigma_hat = (1 + gamma) sigma with fresh noise, then takes the ODE
step from sigma_hat to sigma_next; s_churn = 0 (the default) is the deterministic Algorithm 1.

Churn noise comes from ``noise`` (a generator, one per sample, or a noise_sampler(sigma, sigma_next)); by
default it is ``torch.randn_like(x)`` from the global RNG, drawn only on steps with gamma > 0 (k-diffusion draws,
and discards, one ``randn_like(x)`` on every step, so the two agree when churn covers every step).
"""

from __future__ import annotations

import math

import torch

from diffusion_internals.samplers.common import (
    Callback,
    Denoiser,
    NoiseSampler,
    ancestral_step,
    churn,
    noise_up,
    sampler,
    to_d,
)

__all__ = ["sample_euler", "sample_euler_ancestral", "sample_heun", "sample_dpm2"]


def _no_churn_at_infinity(options: dict) -> float:
    """rho = 0 for Euler's first step from sigma = inf, which churn (s_tmax = inf) would make undefined."""
    if options["s_churn"] > 0 and options["s_tmax"] == math.inf:
        raise ValueError(
            f"s_churn={options['s_churn']} with s_tmax=inf would churn at sigma = inf, where (1 + gamma) sigma has no "
            f"meaning; set s_tmax to a finite level (e.g. the grid's second sigma) or s_churn=0"
        )
    return 0.0


@sampler(at_infinity=lambda options: _no_churn_at_infinity(options))
def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler steps on the probability-flow ODE, optional churn (Algorithm 2, Euler steps, Karras et al. 2022)."""
    n_steps = len(sigmas) - 1
    for i in range(n_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x, sigma_hat = churn(
            x, sigma, sigma_next, noise, n_steps=n_steps, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise
        )
        denoised = denoiser(x, sigma_hat)
        x = x + (sigma_next - sigma_hat) * to_d(x, sigma_hat, denoised)
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


@sampler(at_infinity=lambda options: min(1.0, options["eta"]))  # sigma_up / sigma_next as sigma -> inf
def sample_euler_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler down to sigma_down, then noise up to sigma_next (k-diffusion; DDIM(eta) of Song et al. 2021, eq. 12)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x + (sigma_down - sigma) * to_d(x, sigma, denoised)
        x = noise_up(x, sigma_up, noise, sigma, sigma_next, s_noise)
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


@sampler
def sample_heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Heun's second-order steps, Euler on the last step to sigma = 0 (Algorithms 1 and 2, Karras et al. 2022)."""
    n_steps = len(sigmas) - 1
    for i in range(n_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x, sigma_hat = churn(
            x, sigma, sigma_next, noise, n_steps=n_steps, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise
        )
        denoised = denoiser(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        x_euler = x + (sigma_next - sigma_hat) * d  # Algorithm 2, line 8
        if sigma_next == 0:
            x = x_euler  # d at sigma = 0 is undefined: the last step stays first order
        else:
            d_next = to_d(x_euler, sigma_next, denoiser(x_euler, sigma_next))
            x = x + (sigma_next - sigma_hat) * (d + d_next) / 2  # the trapezoidal rule, lines 9-11
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


@sampler
def sample_dpm2(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Midpoint steps, the midpoint taken in log sigma (k-diffusion's DPM-2, after Algorithm 1 of Lu et al. 2022a)."""
    n_steps = len(sigmas) - 1
    for i in range(n_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x, sigma_hat = churn(
            x, sigma, sigma_next, noise, n_steps=n_steps, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise
        )
        denoised = denoiser(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        if sigma_next == 0:
            x = x + (sigma_next - sigma_hat) * d  # log(0) has no midpoint: the last step is Euler
        else:
            sigma_mid = (sigma_hat * sigma_next) ** 0.5  # halfway in log sigma
            x_mid = x + (sigma_mid - sigma_hat) * d
            d_mid = to_d(x_mid, sigma_mid, denoiser(x_mid, sigma_mid))
            x = x + (sigma_next - sigma_hat) * d_mid
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x
