"""Argument checks for the front doors: each error names the parameter, the value received and what is allowed.

The package checks its input where a user hands it in (``sampling.sample``, constructors, the functions
learners call from the notebooks) with these few helpers, and nowhere else: the equations inside
(``q_sample``, ``ddim_step``, a sampler's step) read as the equation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from numbers import Integral, Real
from typing import TypeVar

import torch

__all__ = ["check_int", "check_real", "check_nonnegative", "check_choice", "check_tensor", "check_sigmas"]

T = TypeVar("T")


def check_int(name: str, value: object, *, minimum: int) -> int:
    """value as an int >= minimum (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_real(name: str, value: object, ok: Callable[[float], bool] = lambda v: True,
               allowed: str = "any value") -> float:
    """value as a finite float for which ok(value) holds; allowed says what ok means, for the message."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number with {allowed}, got {value!r}")
    if not ok(float(value)):
        raise ValueError(f"{name} must satisfy {allowed}, got {value}")
    return float(value)


def check_nonnegative(name: str, value: object) -> float:
    """value as a finite float >= 0 (s_noise, s_churn, eta, ...)."""
    return check_real(name, value, lambda v: v >= 0, "value >= 0")


def check_choice(name: str, value: T, choices: Collection[T]) -> T:
    """value if it is one of choices."""
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_tensor(name: str, values: object, ok: Callable[[torch.Tensor], torch.Tensor], allowed: str,
                 *, one_dim: bool = True) -> torch.Tensor:
    """values as float64 after checking type, shape (non-empty 1-D if one_dim) and that ok(values) holds everywhere."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if one_dim and (values.ndim != 1 or values.numel() == 0):
        raise ValueError(f"{name} must be a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    values = values.to(torch.float64)
    good = ok(values)
    if not bool(good.all()):
        index = tuple(i.item() for i in torch.nonzero(~good)[0])
        raise ValueError(f"{name} must have values in {allowed}; got {values[index].item()} at index {index}")
    return values


def check_sigmas(sigmas: object) -> torch.Tensor:
    """sigmas as given, after checking it is a 1-D float grid, finite, strictly decreasing and ending in 0."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas must be a 1-D tensor of at least 2 noise levels ending in 0, got {shape}")
    if not sigmas.dtype.is_floating_point:
        raise ValueError(f"sigmas must be a floating-point tensor, got dtype {sigmas.dtype}")
    if sigmas[-1] != 0:
        raise ValueError(f"sigmas must end in 0 (the clean sample), got last value {sigmas[-1].item()}")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError("sigmas must be finite; got inf or NaN (a zero-terminal-SNR schedule has sigma_max = inf: "
                         "start from a finite sigma)")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        i = int(torch.nonzero(sigmas[1:] >= sigmas[:-1])[0])
        raise ValueError(f"sigmas must be strictly decreasing, got sigmas[{i}] = {sigmas[i].item()} "
                         f"<= sigmas[{i + 1}] = {sigmas[i + 1].item()}")
    return sigmas
