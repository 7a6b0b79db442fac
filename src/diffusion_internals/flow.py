"""Rectified flow (flow matching) in the sigma view: the path, its velocity, the shifted timestep grid.

The rectified-flow path (Liu et al. 2023; Lipman et al. 2023; Esser et al. 2024, eq. 3 with a_t = 1 - t,
b_t = t) is

    x_t = (1 - t) x0 + t eps,   t in [0, 1],   velocity v = dx_t/dt = eps - x0.

Dividing by 1 - t gives the variance-exploding view of every sampler in this package:

    x_t / (1 - t) = x0 + sigma eps   with   sigma = t / (1 - t),   t = sigma / (1 + sigma),

so a velocity network is a denoiser (:class:`FlowDenoiser`): feed it x_t = x / (1 + sigma) at t, and
x0_hat = x_t - t v_hat. In the table of Karras et al. (2022) that is c_in = c_skip = 1 / (1 + sigma),
c_out = -sigma / (1 + sigma). At t = 1 (sigma = inf) x_t is the pure noise itself, which is exactly what
a denoiser's x holds there (:mod:`diffusion_internals.denoisers`), so the samplers that can start at
sigma = inf run on a flow model from t = 1.

The grid (diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps``): ``steps`` values of t evenly spaced
from 1 down to t_min, each moved by the timestep shift

    t -> shift t / (1 + (shift - 1) t)     (Esser et al. 2024, eq. 23, shift = sqrt(m / n) for m vs n pixels),

then 0. The resolution-dependent ("dynamic") shift of Flux is the same map with shift = e^mu, mu linear in
the number of latent tokens (:func:`dynamic_shift_mu`). diffusers' t_min is the scheduler's smallest training
t, 1 / num_train_timesteps, already shifted once at construction for a static shift and not for a dynamic one;
:func:`flow_timesteps` reproduces both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from diffusion_internals.denoisers import unwrap_output
from diffusion_internals.samplers.common import Callback
from diffusion_internals.validation import check_batch, check_int, check_level, check_like, check_real, check_tensor

__all__ = [
    "flow_interpolate",
    "flow_target",
    "sigma_from_t",
    "t_from_sigma",
    "denoised_from_velocity",
    "FlowDenoiser",
    "shift_timesteps",
    "dynamic_shift_mu",
    "flow_timesteps",
    "flow_sigmas",
    "sample_flow_euler",
]


# ----------------------------------------------------------------------------- the path and its target


def flow_interpolate(x0: torch.Tensor, eps: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps, the rectified-flow path (Liu et al. 2023; Esser et al. 2024, eq. 3)."""
    check_like("eps", eps, x0, x_name="x0")
    t = check_level("t", t, x0, "[0, 1]")  # float64, (B or 1, 1, ..., 1)
    return ((1 - t) * x0 + t * eps).to(x0.dtype)


def flow_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = dx_t/dt = eps - x0, the velocity a flow model regresses on (Lipman et al. 2023; Esser et al. 2024, eq. 6)."""
    check_like("eps", eps, x0, x_name="x0")
    return eps - x0


def sigma_from_t(t: float | torch.Tensor) -> torch.Tensor:
    """sigma = t / (1 - t), the noise level of x_t / (1 - t) = x0 + sigma eps; inf at t = 1 (float64)."""
    t = check_tensor(
        "t", torch.as_tensor(t, dtype=torch.float64), lambda v: (v >= 0) & (v <= 1), "[0, 1]", one_dim=False
    )
    return t / (1 - t)  # 1 / 0 = inf at t = 1, nothing clamped


def t_from_sigma(sigma: float | torch.Tensor) -> torch.Tensor:
    """t = sigma / (1 + sigma), the inverse of sigma_from_t; 1 at sigma = inf (float64)."""
    sigma = check_tensor(
        "sigma", torch.as_tensor(sigma, dtype=torch.float64), lambda s: s >= 0, "[0, inf]", one_dim=False
    )
    return (1 + sigma.reciprocal()).reciprocal()  # 1 / (1 + 1/sigma): exact at 0 and at inf


def denoised_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """x0_hat = x_t - t v, the data estimate of a velocity at x_t (x_t = (1 - t) x0 + t eps, v = eps - x0)."""
    check_like("v", v, x_t, x_name="x_t")
    t = check_level("t", t, x_t, "[0, 1]")  # float64, (B or 1, 1, ..., 1)
    return (x_t - t * v).to(x_t.dtype)


# ----------------------------------------------------------------------------- a velocity network as a denoiser


class FlowDenoiser:
    """A velocity network model(x_t, t * num_train_timesteps) as D(x, sigma) (c_in = c_skip = 1 / (1 + sigma))."""

    def __init__(self, model: Any, *, num_train_timesteps: int = 1000, dtype: torch.dtype | None = None) -> None:
        """Wrap model(x_t, timestep, **cond) -> v, fed timestep = t * num_train_timesteps as diffusers' SD3 and Flux."""
        if not callable(model):
            raise TypeError(f"model must be callable as model(x_t, timestep, **cond), got {type(model).__name__}")
        self.num_train_timesteps = check_int("num_train_timesteps", num_train_timesteps, minimum=2)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be None (the dtype of x) or a floating-point torch.dtype, got {dtype!r}")
        self.model, self.dtype = model, dtype
        # diffusers' training grid is t = 1/T, ..., 1: sigma from 1 / (T - 1) to inf (t = 1, pure noise).
        self.sigma_min, self.sigma_max = 1 / (self.num_train_timesteps - 1), math.inf

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond: Any) -> torch.Tensor:
        """x0_hat = x_t - t v(x_t, t) with x_t = x / (1 + sigma), t = sigma / (1 + sigma) (Esser et al. 2024, eq. 3)."""
        s = check_level("sigma", sigma, x, "[0, inf]")  # float64, (B or 1, 1, ..., 1); inf: x is the pure noise
        t = (1 + s.reciprocal()).reciprocal()  # t = sigma / (1 + sigma), 1 at sigma = inf
        x_t = x * torch.where(torch.isinf(s), 1.0, 1 - t).to(x.dtype)  # x / (1 + sigma); at inf x already is x_1
        dtype = x.dtype if self.dtype is None else self.dtype
        timestep = (t.reshape(-1) * self.num_train_timesteps).expand(x.shape[0]).to(x.device)  # (B,)
        timestep = timestep.to(torch.float64 if dtype == torch.float64 else torch.float32)
        v = unwrap_output(self.model(x_t.to(dtype), timestep, **cond))
        if v.shape != x.shape:
            raise ValueError(f"model output has shape {tuple(v.shape)}, expected the shape of x, {tuple(x.shape)}")
        return (x_t - t.to(x.dtype) * v.to(x.dtype)).to(x.dtype)


# ----------------------------------------------------------------------------- the shifted grid


def shift_timesteps(t: float | torch.Tensor, shift: float) -> torch.Tensor:
    """shift t / (1 + (shift - 1) t): more steps at high noise for shift > 1 (Esser et al. 2024, eq. 23), float64."""
    shift = check_real("shift", shift, lambda v: v > 0, "shift > 0")
    t = check_tensor(
        "t", torch.as_tensor(t, dtype=torch.float64), lambda v: (v >= 0) & (v <= 1), "[0, 1]", one_dim=False
    )
    return shift * t / (1 + (shift - 1) * t)


def dynamic_shift_mu(
    image_seq_len: int,
    *,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """mu, linear in the token count from base_shift to max_shift; the shift is e^mu (Flux; calculate_shift)."""
    image_seq_len = check_int("image_seq_len", image_seq_len, minimum=1)
    base_seq_len = check_int("base_seq_len", base_seq_len, minimum=1)
    max_seq_len = check_int("max_seq_len", max_seq_len, minimum=base_seq_len + 1)
    base_shift, max_shift = check_real("base_shift", base_shift), check_real("max_shift", max_shift)
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return base_shift + slope * (image_seq_len - base_seq_len)


def flow_timesteps(
    steps: int, *, shift: float = 1.0, mu: float | None = None, num_train_timesteps: int = 1000
) -> torch.Tensor:
    """The steps + 1 values of t, 1 down to 0, of diffusers' FlowMatchEulerDiscreteScheduler (Esser et al. 2024).

    A static ``shift``, or with ``mu`` the dynamic shift e^mu (then ``shift`` must stay 1). float64.
    """
    steps = check_int("steps", steps, minimum=1)
    num_train_timesteps = check_int("num_train_timesteps", num_train_timesteps, minimum=2)
    shift = check_real("shift", shift, lambda v: v > 0, "shift > 0")
    if mu is not None:
        if shift != 1.0:
            raise ValueError(f"pass either shift or mu (the dynamic shift e^mu), not both; got shift={shift}, mu={mu}")
        shift = math.exp(check_real("mu", mu))
        t_min = 1 / num_train_timesteps  # a dynamic scheduler keeps its training grid unshifted
    else:
        t_min = float(shift_timesteps(1 / num_train_timesteps, shift))  # diffusers shifts it once at construction
    ramp = torch.from_numpy(np.linspace(1.0, t_min, steps))  # diffusers' own linspace (numpy, float64)
    return torch.cat([shift_timesteps(ramp, shift), ramp.new_zeros(1)])


def flow_sigmas(
    steps: int, *, shift: float = 1.0, mu: float | None = None, num_train_timesteps: int = 1000
) -> torch.Tensor:
    """sigma = t / (1 - t) of flow_timesteps: inf first (t = 1), then 0 last; the grid for the package's samplers."""
    return sigma_from_t(flow_timesteps(steps, shift=shift, mu=mu, num_train_timesteps=num_train_timesteps))


# ----------------------------------------------------------------------------- the flow-matching Euler sampler


@torch.no_grad()
def sample_flow_euler(
    velocity: Callable[..., Any],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    num_train_timesteps: int = 1000,
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """x_{t'} = x_t + (t' - t) v(x_t, t * num_train_timesteps), from t = 1 to 0 (Euler; Esser et al. 2024).

    ``x`` is the noise at timesteps[0] (t = 1: eps itself), ``timesteps`` decreasing in [0, 1] and ending in 0.
    """
    x = check_batch("x", x)
    t_grid = check_tensor("timesteps", timesteps, lambda v: (v >= 0) & (v <= 1), "[0, 1]")
    if len(t_grid) < 2 or t_grid[-1] != 0 or not bool((t_grid[1:] < t_grid[:-1]).all()):
        raise ValueError(f"timesteps must be strictly decreasing, end in 0 and have >= 2 values, got {t_grid.tolist()}")
    check_int("num_train_timesteps", num_train_timesteps, minimum=1)
    cond = {} if extra_args is None else extra_args
    for i in range(len(t_grid) - 1):
        t, t_next = float(t_grid[i]), float(t_grid[i + 1])
        timestep = x.new_full((x.shape[0],), t * num_train_timesteps)  # (B,)
        v = unwrap_output(velocity(x, timestep, **cond)).to(x.dtype)
        x = x + (t_next - t) * v
        if callback is not None:
            callback(x=x, i=i, t=t, t_next=t_next, velocity=v)
    return x
