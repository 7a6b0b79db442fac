"""Reverse steps of DDPM and DDIM in the discrete timestep view, from any t to any earlier t_prev.

Ho et al. (2020) parameterise the reverse step with the forward posterior q(x_{t'} | x_t, x0)
(their eqs. 6-7, written here for any earlier step t' = t_prev, with alpha_bar' its alpha_bar and
beta = 1 - alpha_bar / alpha_bar'), plugging in the network's estimate of x0:

    x0_hat = (x_t - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar),
    x_{t'} = mu~(x_t, x0_hat) + sqrt(beta~) z,   z ~ N(0, I),
    mu~ = sqrt(alpha_bar') beta / (1 - alpha_bar) x0 + sqrt(1 - beta) (1 - alpha_bar') / (1 - alpha_bar) x_t,
    beta~ = (1 - alpha_bar') / (1 - alpha_bar) beta,

which for t' = t - 1 is their eq. 11 / Algorithm 2 line 4 with the "fixed small" variance, and for
a skipped grid is what diffusers' DDPMScheduler does with fewer inference steps. DDIM (Song et al.
2021, eq. 12) keeps the same marginals with a family of non-Markovian reverse steps,

    x_{t'} = sqrt(alpha_bar') x0_hat + sqrt(1 - alpha_bar' - s^2) eps_hat + s z,
    s = eta sqrt((1 - alpha_bar') / (1 - alpha_bar)) sqrt(1 - alpha_bar / alpha_bar')   (eq. 16),

deterministic at eta = 0 and equal to the DDPM step at eta = 1. At the end of the chain (``t_prev =
-1``) alpha_bar' = 1, the clean data: both steps return x0_hat. Indices are 0-based as in
:mod:`diffusion_internals.forward`. The samplers of :mod:`diffusion_internals.samplers` run the same
updates on a sigma grid.
"""
from __future__ import annotations

from numbers import Integral

import torch

from diffusion_internals.forward import _at, posterior
from diffusion_internals.parameterization import x0_from_eps

__all__ = ["ddpm_step", "ddim_step"]


def _check_noise(noise: torch.Tensor | None, x_t: torch.Tensor, *, required: bool) -> None:
    if noise is None and not required:
        return
    if not isinstance(noise, torch.Tensor) or noise.shape != x_t.shape:
        shape = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of the same shape as x_t, {tuple(x_t.shape)}; got {shape}")


def _alpha_bars(alphas_cumprod: torch.Tensor, t: int | torch.Tensor, t_prev: int | torch.Tensor | None,
                x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_bar_t, alpha_bar_{t_prev}) as float64 (B or 1, 1, ..., 1); t_prev = -1 (the default at t = 0) is the clean data."""
    a = _at("alphas_cumprod", alphas_cumprod, t, x_t)
    if t_prev is None:
        t_prev = t - 1
    padded = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod])  # index 0 = "step -1", alpha_bar = 1
    if isinstance(t_prev, Integral) and not isinstance(t_prev, bool) and not -1 <= t_prev:
        raise ValueError(f"t_prev must be >= -1 (-1 = the clean data), got {t_prev}")
    a_prev = _at("alphas_cumprod", padded, t_prev + 1, x_t)
    t_now, t_before = torch.as_tensor(t), torch.as_tensor(t_prev)
    if not bool((t_before < t_now).all()):
        raise ValueError(f"t_prev must be earlier than t (t_prev < t), got t={t_now.tolist()} and t_prev={t_before.tolist()}")
    return a, a_prev


def ddpm_step(x_t: torch.Tensor, t: int | torch.Tensor, eps_hat: torch.Tensor, alphas_cumprod: torch.Tensor,
              noise: torch.Tensor, *, t_prev: int | torch.Tensor | None = None) -> torch.Tensor:
    """x_{t_prev} = posterior mean at x0_hat + sqrt(beta~) noise; t_prev defaults to t - 1 (Ho et al. 2020, eqs. 6-7 and 11)."""
    _check_noise(noise, x_t, required=True)
    a, a_prev = _alpha_bars(alphas_cumprod, t, t_prev, x_t)
    if bool((a == 1).any()):
        raise ValueError("alphas_cumprod must be < 1 at t for the posterior (no noise added yet), got 1.0")
    x0_hat = x0_from_eps(x_t, eps_hat, a.reshape(-1) if a.shape[0] > 1 else a.reshape(()))
    mean, variance = posterior(x0_hat, x_t, a, a_prev)
    return (mean + variance.sqrt() * noise).to(x_t.dtype)


def ddim_step(x_t: torch.Tensor, t: int | torch.Tensor, eps_hat: torch.Tensor, alphas_cumprod: torch.Tensor, *,
              t_prev: int | torch.Tensor | None = None, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """x_{t_prev} = sqrt(a') x0_hat + sqrt(1 - a' - s^2) eps_hat + s noise, s from eta (Song et al. 2021, eqs. 12 and 16)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta:
        raise ValueError(f"eta must be a number >= 0 (0 = DDIM, 1 = DDPM's variance), got {eta!r}")
    _check_noise(noise, x_t, required=eta > 0)
    a, a_prev = _alpha_bars(alphas_cumprod, t, t_prev, x_t)
    x0_hat = x0_from_eps(x_t, eps_hat, a.reshape(-1) if a.shape[0] > 1 else a.reshape(()))
    s = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()  # (B or 1, 1, ..., 1)
    direction_variance = 1 - a_prev - s**2
    if bool((direction_variance < -1e-12).any()):  # possible for eta > 1 only
        raise ValueError(f"eta={eta} is too large: the DDIM noise variance s^2 exceeds 1 - alpha_bar_prev at this step")
    out = a_prev.sqrt() * x0_hat + direction_variance.clamp_min(0).sqrt() * eps_hat  # clamp: round-off at eta = 1
    if eta > 0:
        out = out + s * noise
    return out.to(x_t.dtype)
