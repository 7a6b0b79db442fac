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

import torch

from diffusion_internals.forward import posterior, schedule_at
from diffusion_internals.parameterization import x0_from_eps
from diffusion_internals.validation import check_like, check_real, check_timestep

__all__ = ["ddpm_step", "ddim_step"]


def _alpha_bars(
    alphas_cumprod: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor | None,
    x_t: torch.Tensor,
    *,
    interval: str = "[0, 1]",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_bar_t in interval, alpha_bar_{t_prev}) as float64 (B or 1, 1, ..., 1); t_prev = -1 is the clean data."""
    a = schedule_at(alphas_cumprod, t, x_t, interval=interval)
    t_prev = t - 1 if t_prev is None else t_prev
    check_timestep(t_prev, len(alphas_cumprod), x_t, of="alphas_cumprod", name="t_prev", first=-1)  # -1: clean data
    if not bool((torch.as_tensor(t_prev) < torch.as_tensor(t)).all()):
        raise ValueError(
            f"t_prev must be earlier than t (t_prev < t), got t={torch.as_tensor(t).tolist()} and "
            f"t_prev={torch.as_tensor(t_prev).tolist()}"
        )
    padded = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod])  # index 0 = "step -1", alpha_bar = 1
    return a, schedule_at(padded, t_prev + 1, x_t)


def ddpm_step(
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    eps_hat: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    noise: torch.Tensor,
    *,
    t_prev: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """x_{t_prev} = posterior mean at x0_hat + sqrt(beta~) noise, t_prev = t - 1 by default (Ho et al. 2020, eq. 11)."""
    check_like("noise", noise, x_t, x_name="x_t")
    a, a_prev = _alpha_bars(alphas_cumprod, t, t_prev, x_t, interval="[0, 1)")  # a < 1: a posterior needs noise
    x0_hat = x0_from_eps(x_t, eps_hat, a.squeeze())  # (B or 1, 1, ..., 1) -> (B,) or ()
    mean, variance = posterior(x0_hat, x_t, a, a_prev)
    return (mean + variance.sqrt() * noise).to(x_t.dtype)


def ddim_step(
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    eps_hat: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    t_prev: int | torch.Tensor | None = None,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_{t_prev} = sqrt(a') x0_hat + sqrt(1 - a' - s^2) eps_hat + s noise, s from eta (Song et al. 2021, eq. 12)."""
    eta = check_real("eta", eta, lambda v: v >= 0, "eta >= 0 (0 = DDIM, 1 = DDPM's variance)")
    if eta > 0 or noise is not None:
        check_like("noise", noise, x_t, x_name="x_t")
    a, a_prev = _alpha_bars(alphas_cumprod, t, t_prev, x_t)
    x0_hat = x0_from_eps(x_t, eps_hat, a.squeeze())  # (B or 1, 1, ..., 1) -> (B,) or ()
    s = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()  # (B or 1, 1, ..., 1)
    direction_variance = 1 - a_prev - s**2
    if bool((direction_variance < -1e-12).any()):  # possible for eta > 1 only
        raise ValueError(f"eta={eta} is too large: the DDIM noise variance s^2 exceeds 1 - alpha_bar_prev at this step")
    out = a_prev.sqrt() * x0_hat + direction_variance.clamp_min(0).sqrt() * eps_hat  # clamp: round-off at eta = 1
    if eta > 0:
        out = out + s * noise
    return out.to(x_t.dtype)
