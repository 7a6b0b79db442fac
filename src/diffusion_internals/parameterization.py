"""Conversions between what a network can predict: x0, eps, v and the score, at one noise level.

With ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` (Ho et al. 2020, eq. 4) any two of
``x_t, x0, eps, v`` give the others. ``x`` tensors are ``(B, ...)``; ``alpha_bar`` is a scalar or
``(B,)`` (broadcast by :func:`diffusion_internals.utils.broadcast_like`). Results keep the
dtype of the first tensor argument; the schedule arithmetic is done in float64.
"""

from __future__ import annotations

import torch

from diffusion_internals.utils import broadcast_like

__all__ = ["x0_from_eps", "eps_from_x0", "v_from_x0_eps", "x0_from_v", "eps_from_v", "score_from_eps"]


def _alpha_bar(alpha_bar: float | torch.Tensor, x: torch.Tensor, y: torch.Tensor, y_name: str, *,
               zero_ok: bool, one_ok: bool) -> torch.Tensor:
    """Check shapes and the range of ``alpha_bar``; return it as float64 of shape (B or 1, 1, ..., 1)."""
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{y_name} must have the shape of x, {tuple(x.shape)}; got {shape}")
    a = broadcast_like(alpha_bar, x, name="alpha_bar")
    low_ok = a >= 0 if zero_ok else a > 0
    high_ok = a <= 1 if one_ok else a < 1
    if not bool((low_ok & high_ok).all()):
        allowed = ("[" if zero_ok else "(") + "0, 1" + ("]" if one_ok else ")")
        raise ValueError(f"alpha_bar must lie in {allowed} here, got {a.flatten().tolist()}")
    return a


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) (Ho et al. 2020, eq. 15)."""
    a = _alpha_bar(alpha_bar, x_t, eps, "eps", zero_ok=False, one_ok=True)
    return ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).to(x_t.dtype)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar) (Ho et al. 2020, eq. 4 solved for eps)."""
    a = _alpha_bar(alpha_bar, x_t, x0, "x0", zero_ok=True, one_ok=False)
    return ((x_t - a.sqrt() * x0) / (1 - a).sqrt()).to(x_t.dtype)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans & Ho 2022, Sec. 4)."""
    a = _alpha_bar(alpha_bar, x0, eps, "eps", zero_ok=True, one_ok=True)
    return (a.sqrt() * eps - (1 - a).sqrt() * x0).to(x0.dtype)


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v (Salimans & Ho 2022, Sec. 4 and App. D)."""
    a = _alpha_bar(alpha_bar, x_t, v, "v", zero_ok=True, one_ok=True)
    return (a.sqrt() * x_t - (1 - a).sqrt() * v).to(x_t.dtype)


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v (Salimans & Ho 2022, Sec. 4 and App. D)."""
    a = _alpha_bar(alpha_bar, x_t, v, "v", zero_ok=True, one_ok=True)
    return ((1 - a).sqrt() * x_t + a.sqrt() * v).to(x_t.dtype)


def score_from_eps(eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """grad_x log q(x_t) ~= -eps / sqrt(1 - alpha_bar) (Song et al. 2021, eq. 7; Vincent 2011)."""
    a = _alpha_bar(alpha_bar, eps, eps, "eps", zero_ok=True, one_ok=False)
    return (-eps / (1 - a).sqrt()).to(eps.dtype)
