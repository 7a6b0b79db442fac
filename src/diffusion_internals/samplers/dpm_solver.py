"""DPM-Solver++ (Lu et al. 2022b): exponential integrators for the data prediction x0_hat = D(x, sigma).

Time is lambda = -log sigma (log-SNR / 2 with alpha = 1 in the sigma view) and a step from sigma to
sigma_next has length h = lambda_next - lambda = log(sigma / sigma_next). In these variables the
probability-flow ODE is linear in x plus a term in D, which is integrated exactly when D is held
constant over the step:

    x_next = e^{-h} x + (1 - e^{-h}) D            (DPM-Solver++(1), which is DDIM)

The higher-order solvers replace the constant D by a better estimate of its average over the step:
one extra evaluation at the midpoint (2S) or finite differences of earlier evaluations (2M, 3M).
The SDE variants (eta > 0) use e^{-(1 + eta) h} in place of e^{-h} and add noise of standard
deviation sigma_next sqrt(1 - e^{-2 eta h}); eta = 0 is the ODE solver.

SDE noise comes from ``noise``: i.i.d. normals from a generator by default, where k-diffusion defaults to
a Brownian-tree noise sampler (pass one as ``noise`` to match it).
"""

from __future__ import annotations

from typing import Literal

import torch

from diffusion_internals.samplers.common import Callback, Denoiser, NoiseSampler, ancestral_step, noise_up, sampler

__all__ = ["sample_dpmpp_2m", "sample_dpmpp_2s_ancestral", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"]


def _exponential_step(x: torch.Tensor, x0_hat: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """x_next = e^{-h} x + (1 - e^{-h}) x0_hat, exact for constant x0_hat (DPM-Solver++(1), Lu et al. 2022b)."""
    return torch.exp(-h) * x - torch.expm1(-h) * x0_hat


def _phi_2(h: torch.Tensor) -> torch.Tensor:
    """1 - (1 - e^{-h}) / h, the weight of a first difference h dD/dlambda in the exact step (~ h / 2 for small h)."""
    return torch.expm1(-h) / h + 1


def _sde_noise_std(sigma_next: torch.Tensor, h: torch.Tensor, eta: float) -> torch.Tensor:
    """sigma_next sqrt(1 - e^{-2 eta h}), the noise the SDE solver adds over a step of length h."""
    return sigma_next * (-torch.expm1(-2 * eta * h)) ** 0.5


@sampler(at_infinity=lambda options: 0.0)  # r = h_last / h = inf: the correction vanishes
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback: Callback) -> torch.Tensor:
    """DPM-Solver++(2M), second-order multistep in lambda = -log sigma (Algorithm 2, Lu et al. 2022b)."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised  # e^{-h} = sigma_next / sigma = 0: the last step lands on x0_hat
        else:
            h = torch.log(sigma / sigma_next)
            if old_denoised is None:
                x = _exponential_step(x, denoised, h)  # first step: DPM-Solver++(1)
            else:
                r = h_last / h
                x = _exponential_step(x, denoised + (denoised - old_denoised) / (2 * r), h)
            h_last = h
        old_denoised = denoised
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


@sampler
def sample_dpmpp_2s_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2S) to sigma_down, then noise up to sigma_next (Algorithm 1, Lu et al. 2022b; k-diffusion)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        if sigma_down == 0:
            x = denoised  # no midpoint in log sigma before 0: a first-order step to x0_hat
        else:
            h = torch.log(sigma / sigma_down)
            sigma_mid = (sigma * sigma_down) ** 0.5  # lambda + h / 2
            x_mid = _exponential_step(x, denoised, h / 2)
            x = _exponential_step(x, denoiser(x_mid, sigma_mid), h)
        x = noise_up(x, sigma_up, noise, sigma, sigma_next, s_noise)
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


@sampler(at_infinity=lambda options: 1.0 if options["eta"] > 0 else 0.0)  # e^{-eta h} = 0 at h = inf
def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: Literal["midpoint", "heun"] = "midpoint",
) -> torch.Tensor:
    """SDE-DPM-Solver++(2M); eta = 0 with the midpoint rule is DPM-Solver++(2M) (Lu et al. 2022b; k-diffusion)."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)
            h_eta = (1 + eta) * h
            x = _exponential_step(x, denoised, h_eta)
            if old_denoised is not None:
                slope = (denoised - old_denoised) * (h / h_last)  # ~ h dD/dlambda
                weight = -torch.expm1(-h_eta) / 2 if solver_type == "midpoint" else _phi_2(h_eta)
                x = x + weight * slope
            if eta > 0:
                x = x + _sde_noise_std(sigma_next, h, eta) * s_noise * noise(sigma, sigma_next)
            h_last = h
        old_denoised = denoised
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x


@sampler(at_infinity=lambda options: 1.0 if options["eta"] > 0 else 0.0)  # e^{-eta h} = 0 at h = inf
def sample_dpmpp_3m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(3M) SDE: third-order multistep with two finite differences (k-diffusion, after Lu et al. 2022b)."""
    denoised_1, denoised_2 = None, None  # D at the previous two steps
    h_1, h_2 = None, None  # the lengths of the previous two steps
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)
            h_eta = (1 + eta) * h
            x = _exponential_step(x, denoised, h_eta)
            if h_2 is not None:
                # Backward differences on the non-uniform lambda grid, in units of h:
                # d1 ~ h dD/dlambda and d2 ~ (h^2 / 2) d^2D/dlambda^2, both at lambda_i.
                # Note: the exact integral of the quadratic term is -2 phi_3 d2. k-diffusion (like
                # diffusers and DPM-Solver's third-order multistep code) uses -phi_3 d2, which we keep
                # for parity; it makes this sampler second order, not third (tests/package/test_samplers.py).
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = _phi_2(h_eta)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                x = x + _phi_2(h_eta) * (denoised - denoised_1) * (h / h_1)  # second order on step 2
            if eta > 0:
                x = x + _sde_noise_std(sigma_next, h, eta) * s_noise * noise(sigma, sigma_next)
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x
