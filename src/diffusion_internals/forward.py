"""The forward (noising) process q of DDPM: one Markov step, the closed form, and the posterior.

Index convention (0-based, as diffusers): with ``T`` training steps, ``t = 0, ..., T - 1``.

* ``betas[t]`` takes ``x_{t-1}`` to ``x_t`` (:func:`q_step`), where ``x_{-1}`` is the clean data ``x0``.
* ``q_sample(x0, t)`` is the distribution after applying steps ``0, ..., t``, so
  ``alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])``.
* The papers count ``1, ..., T``: code timestep ``t`` is the paper's ``t + 1``.

Schedule arithmetic is done in float64; every result is cast back to the dtype of ``x``.
"""

from __future__ import annotations

from numbers import Integral

import torch

from diffusion_internals.utils import broadcast_like

__all__ = ["q_sample", "q_step", "q_posterior", "posterior"]


def _at(name: str, schedule: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``schedule[t]`` as float64 of shape (B or 1, 1, ..., 1), after checking ``t`` against the schedule."""
    if not isinstance(schedule, torch.Tensor) or schedule.ndim != 1 or schedule.numel() == 0:
        shape = tuple(schedule.shape) if isinstance(schedule, torch.Tensor) else type(schedule).__name__
        raise ValueError(f"{name} must be a non-empty 1-D tensor, got {shape}")
    if not bool(((schedule >= 0) & (schedule <= 1)).all()):
        raise ValueError(f"{name} must have values in [0, 1], got min {schedule.min().item()} "
                         f"and max {schedule.max().item()}")
    num_steps = schedule.shape[0]
    if isinstance(t, torch.Tensor):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.ndim > 1:
            raise ValueError(f"t must be an int or an integer tensor of shape () or (B,), got dtype {t.dtype} "
                             f"and shape {tuple(t.shape)}")
        if t.ndim == 1 and t.shape[0] != x.shape[0]:
            raise ValueError(f"t must be an int or have shape (B,) = ({x.shape[0]},) to match x of shape "
                             f"{tuple(x.shape)}; got shape {tuple(t.shape)}")
        if t.numel() and not bool(((t >= 0) & (t < num_steps)).all()):
            raise ValueError(f"t must lie in [0, {num_steps - 1}] for {name} of length {num_steps}, got {t.tolist()}")
        t = t.to(schedule.device)
    elif isinstance(t, Integral) and not isinstance(t, bool):
        if not 0 <= t < num_steps:
            raise ValueError(f"t must lie in [0, {num_steps - 1}] for {name} of length {num_steps}, got {t}")
    else:
        raise ValueError(f"t must be an int or an integer tensor of shape () or (B,), got {type(t).__name__}")
    return broadcast_like(schedule.to(torch.float64)[t], x)


def _check_same_shape(name: str, y: torch.Tensor, x: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name} must be a tensor of the same shape as x, {tuple(x.shape)}; got {shape}")


def q_sample(x0: torch.Tensor, t: int | torch.Tensor, alphas_cumprod: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, a draw from q(x_t | x0) (Ho et al. 2020, eq. 4)."""
    _check_same_shape("noise", noise, x0)
    a = _at("alphas_cumprod", alphas_cumprod, t, x0)  # (B or 1, 1, ..., 1)
    return (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(x0.dtype)


def q_step(x_prev: torch.Tensor, t: int | torch.Tensor, betas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise, one step of q(x_t | x_{t-1}) (Ho et al. 2020, eq. 2)."""
    _check_same_shape("noise", noise, x_prev)
    beta = _at("betas", betas, t, x_prev)  # (B or 1, 1, ..., 1)
    return ((1 - beta).sqrt() * x_prev + beta.sqrt() * noise).to(x_prev.dtype)


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor,
                alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x0); at t = 0 they are x0 and 0 (Ho et al. 2020, eqs. 6-7)."""
    _check_same_shape("x_t", x_t, x0)
    a = _at("alphas_cumprod", alphas_cumprod, t, x0)  # alpha_bar_t, (B or 1, 1, ..., 1)
    if bool((a == 1).any()):
        raise ValueError("alphas_cumprod must be < 1 at t for the posterior (no noise added yet), got 1.0")
    # alpha_bar_{t-1}, with alpha_bar_{-1} = 1 for the clean data (diffusers' `self.one`).
    a_prev = _at("alphas_cumprod", torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod]), t, x0)
    mean, variance = posterior(x0, x_t, a, a_prev)
    return mean.to(x0.dtype), variance.to(x0.dtype)


def posterior(x0: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
              alpha_bar_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t'} | x_t, x0) for any earlier t' with alpha_bar' (Ho et al. 2020, eqs. 6-7)."""
    a, a_prev = alpha_bar, alpha_bar_prev  # broadcastable to x; the step's beta = 1 - a / a'
    beta = 1 - a / a_prev
    mean = (a_prev.sqrt() * beta / (1 - a)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a)) * x_t
    variance = (1 - a_prev) / (1 - a) * beta  # beta-tilde, (B or 1, 1, ..., 1)
    return mean, variance
