"""What every sampler shares: the sigma-grid check, the step loop, the ancestral split, noise.

Samplers work in the variance-exploding view of Karras et al. (2022): x = x0 + sigma * eps, and a
denoiser D(x, sigma, **cond) returns an estimate of x0.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from diffusion_internals.utils import broadcast_like
from diffusion_internals.denoisers import Denoiser
from diffusion_internals.utils import Generators, randn_like
from diffusion_internals.validation import check_sigmas

__all__ = [
    "NoiseSampler",
    "Denoiser",
    "Callback",
    "check_sigmas",
    "noise_up",
    "check_eta",
    "check_nonnegative",
    "check_churn",
    "step_range",
    "denoise",
    "to_d",
    "ancestral_step",
    "churn",
    "noise_sampler_for",
]

# noise_sampler(sigma, sigma_next) -> a standard normal tensor shaped like x (k-diffusion's convention).
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# callback(x=x_next, i=i, sigma=sigma_i, sigma_next=sigma_{i+1}, denoised=x0_hat), after each step.
Callback = Callable[..., object]


def check_eta(eta: float) -> float:
    """Check the stochasticity eta >= 0 (0 is deterministic)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")
    return float(eta)


def check_nonnegative(name: str, value: float) -> float:
    """Check that a tuning number such as s_noise or s_churn is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_churn(s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> None:
    """Check the churn options of Algorithm 2, Karras et al. 2022: s_churn, s_noise >= 0 and 0 <= s_tmin <= s_tmax."""
    check_nonnegative("s_churn", s_churn)
    check_nonnegative("s_noise", s_noise)
    check_nonnegative("s_tmin", s_tmin)
    if isinstance(s_tmax, bool) or not isinstance(s_tmax, (int, float)) or not s_tmax >= s_tmin:
        raise ValueError(f"s_tmax must be a number >= s_tmin = {s_tmin}, got {s_tmax!r}")


def step_range(n: int, progress: bool) -> Iterable[int]:
    """range(n), with a tqdm progress bar when progress=True."""
    if progress:
        from tqdm.auto import trange

        return trange(n)
    return range(n)


def denoise(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, extra_args: dict) -> torch.Tensor:
    """x0_hat = D(x, sigma), with the scalar sigma repeated to shape (B,) (k-diffusion's ``sigma * s_in``)."""
    return denoiser(x, x.new_full((x.shape[0],), float(sigma)), **extra_args)  # (B,), in the dtype of x


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma = (x - D(x, sigma)) / sigma, the probability-flow ODE (Karras et al. 2022, eq. 3 with sigma(t) = t)."""
    return (x - denoised) / broadcast_like(sigma, x).to(x.dtype)


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_down, sigma_up) with sigma_down^2 + sigma_up^2 = sigma_next^2; eta = 1 is DDPM's posterior noise (Song et al. 2021, eq. 16)."""
    if eta == 0:
        return sigma_next, torch.zeros_like(sigma_next)
    # Two numbers: python floats (float64), where each 0-d tensor op would cost a torch dispatch.
    s, s_next = float(sigma), float(sigma_next)
    sigma_up = min(s_next, eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
    sigma_down = math.sqrt(s_next**2 - sigma_up**2)
    return sigma_next.new_tensor(sigma_down), sigma_next.new_tensor(sigma_up)


def noise_up(
    x: torch.Tensor,
    sigma_up: torch.Tensor,
    noise: NoiseSampler,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """x + sigma_up * s_noise * z, the noise half of an ancestral step (no draw when sigma_up = 0)."""
    if sigma_up > 0:
        return x + sigma_up * s_noise * noise(sigma, sigma_next)
    return x


def churn(
    x: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    noise: NoiseSampler,
    *,
    n_steps: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_hat, sigma_hat): raise the noise level to sigma_hat = (1 + gamma) sigma (Algorithm 2 lines 4-6, Karras et al. 2022)."""
    gamma = min(s_churn / n_steps, 2**0.5 - 1) if s_churn > 0 and s_tmin <= sigma <= s_tmax else 0.0
    if gamma == 0:
        return x, sigma  # no draw: k-diffusion draws (and discards) one randn_like(x) every step
    sigma_hat = sigma * (1 + gamma)
    eps = s_noise * noise(sigma, sigma_next)  # eps ~ N(0, s_noise^2 I)
    return x + (sigma_hat**2 - sigma**2) ** 0.5 * eps, sigma_hat


def noise_sampler_for(x: torch.Tensor, generator: Generators, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    """The noise source of a stochastic sampler: an explicit noise_sampler, else draws from generator."""
    if noise_sampler is not None:
        if generator is not None:
            raise ValueError("pass either generator or noise_sampler, not both")
        return noise_sampler
    return lambda sigma, sigma_next: randn_like(x, generator)
