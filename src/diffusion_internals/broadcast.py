"""The one shape contract of the package: ``x`` is ``(B, ...)``, a schedule value is a scalar or ``(B,)``.

Every function that mixes a per-sample schedule value (``alpha_bar``, ``sigma``, ...) with a batch
``x`` goes through :func:`broadcast_like`, so the rule lives in one place.
"""

from __future__ import annotations

import torch


def broadcast_like(value: float | torch.Tensor, x: torch.Tensor, *, name: str = "value") -> torch.Tensor:
    """Reshape a scalar, 0-d or (B,) schedule value to float64 (B or 1, 1, ..., 1) for x of shape (B, ...) (cf. k-diffusion ``append_dims``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension, shape (B, ...); got a 0-d tensor")
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(
            f"{name} must be a python number, a 0-d tensor or a (B,) tensor, got {type(value).__name__}"
        )
    # Schedule arithmetic is done in float64 (STYLE habit 2); callers cast the result to x.dtype.
    value = torch.as_tensor(value, dtype=torch.float64, device=x.device)
    if value.ndim == 0:
        return value.reshape((1,) * x.ndim)  # (1, 1, ..., 1)
    if value.ndim != 1 or value.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be a scalar or have shape (B,) = ({x.shape[0]},) to match x of shape "
            f"{tuple(x.shape)}; got shape {tuple(value.shape)}"
        )
    return value.reshape((x.shape[0],) + (1,) * (x.ndim - 1))  # (B,) -> (B, 1, ..., 1)
