"""The forward (noising) process q of DDPM: one Markov step, the closed form, and the posterior.

Index convention (0-based, as diffusers): with ``T`` training steps, ``t = 0, ..., T - 1``.

* ``betas[t]`` takes ``x_{t-1}`` to ``x_t`` (:func:`q_step`), where ``x_{-1}`` is the clean data ``x0``.
* ``q_sample(x0, t)`` is the distribution after applying steps ``0, ..., t``, so
  ``alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])``.
* The papers count ``1, ..., T``: code timestep ``t`` is the paper's ``t + 1``.

Schedule arithmetic is done in float64; every result is cast back to the dtype of ``x``.
"""

from __future__ import annotations

import torch

from diffusion_internals.validation import check_level, check_like, check_tensor, check_timestep

__all__ = ["schedule_at", "q_sample", "q_step", "q_posterior", "posterior"]


def schedule_at(
    schedule: torch.Tensor,
    t: int | torch.Tensor,
    x: torch.Tensor,
    *,
    name: str = "alphas_cumprod",
    interval: str = "[0, 1]",
) -> torch.Tensor:
    """schedule[t] as float64 (B or 1, 1, ..., 1) for x (B, ...), t an int or (B,); schedule[t] must lie in interval."""
    values = check_tensor(name, schedule, lambda v: (v >= 0) & (v <= 1), "[0, 1]")  # (T,) float64
    t = torch.as_tensor(check_timestep(t, len(values), x, of=name), device=values.device)  # () or (B,)
    return check_level(f"{name}[t]", values[t], x, interval)


def q_sample(
    x0: torch.Tensor, t: int | torch.Tensor, alphas_cumprod: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, a draw from q(x_t | x0) (Ho et al. 2020, eq. 4)."""
    check_like("noise", noise, x0)
    a = schedule_at(alphas_cumprod, t, x0)  # alpha_bar_t, (B or 1, 1, ..., 1)
    return (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(x0.dtype)


def q_step(x_prev: torch.Tensor, t: int | torch.Tensor, betas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise, one step of q(x_t | x_{t-1}) (Ho et al. 2020, eq. 2)."""
    check_like("noise", noise, x_prev)
    beta = schedule_at(betas, t, x_prev, name="betas")  # (B or 1, 1, ..., 1)
    return ((1 - beta).sqrt() * x_prev + beta.sqrt() * noise).to(x_prev.dtype)


def q_posterior(
    x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor, alphas_cumprod: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x0); at t = 0 they are x0 and 0 (Ho et al. 2020, eqs. 6-7)."""
    check_like("x_t", x_t, x0)
    a = schedule_at(alphas_cumprod, t, x0, interval="[0, 1)")  # alpha_bar_t < 1: some noise added
    # alpha_bar_{t-1}, with alpha_bar_{-1} = 1 for the clean data (diffusers' `self.one`).
    a_prev = schedule_at(torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod]), t, x0)
    mean, variance = posterior(x0, x_t, a, a_prev)
    return mean.to(x0.dtype), variance.to(x0.dtype)


def posterior(
    x0: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t'} | x_t, x0) for any earlier t' with alpha_bar' (Ho et al. 2020, eqs. 6-7)."""
    a, a_prev = alpha_bar, alpha_bar_prev  # broadcastable to x; the step's beta = 1 - a / a'
    beta = 1 - a / a_prev
    mean = (a_prev.sqrt() * beta / (1 - a)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a)) * x_t
    variance = (1 - a_prev) / (1 - a) * beta  # beta-tilde, (B or 1, 1, ..., 1)
    return mean, variance
