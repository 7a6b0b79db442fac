"""Argument checks for the front doors: each error names the parameter, the value received and what is allowed.

The package checks its input where a user hands it in (``sampling.sample``, constructors, the functions
learners call from the notebooks) with these few helpers, in a line or two before the equation, and nowhere
else: the equations themselves (``posterior``, a sampler's step) read as the equation.

Shapes and levels follow the shape contract of :mod:`diffusion_internals.utils`: :func:`check_like` for a
tensor beside ``x``, :func:`check_level` for a scalar or ``(B,)`` noise level (``alpha_bar``, ``sigma``)
written as an interval, :func:`check_timestep` for an index into a schedule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection
from numbers import Integral, Real
from typing import TypeVar

import torch

from diffusion_internals.utils import broadcast_like

__all__ = [
    "check_images",
    "check_int",
    "check_real",
    "check_nonnegative",
    "check_choice",
    "check_tensor",
    "check_decreasing",
    "check_sigmas",
    "check_like",
    "check_batch",
    "check_level",
    "check_timestep",
]

T = TypeVar("T")


def check_int(name: str, value: object, *, minimum: int) -> int:
    """value as an int >= minimum (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_real(
    name: str, value: object, ok: Callable[[float], bool] = lambda v: True, allowed: str = "any value"
) -> float:
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
    """value if it is one of choices, of the same type (True is not the choice 1, nor 2.0 the choice 2)."""
    if isinstance(value, (list, dict, set)) or not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_tensor(
    name: str, values: object, ok: Callable[[torch.Tensor], torch.Tensor], allowed: str, *, one_dim: bool = True
) -> torch.Tensor:
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


def check_decreasing(name: str, values: torch.Tensor) -> torch.Tensor:
    """values (1-D) if every entry is strictly below the one before it."""
    if not bool((values[1:] < values[:-1]).all()):
        i = int(torch.nonzero(values[1:] >= values[:-1])[0])
        raise ValueError(
            f"{name} must be strictly decreasing, got {name}[{i}] = {values[i].item()} "
            f"<= {name}[{i + 1}] = {values[i + 1].item()}"
        )
    return values


def check_sigmas(sigmas: object) -> torch.Tensor:
    """sigmas as given, if a 1-D float grid, strictly decreasing, ending in 0 and finite after sigmas[0]."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas must be a 1-D tensor of at least 2 noise levels ending in 0, got {shape}")
    if not sigmas.dtype.is_floating_point:
        raise ValueError(f"sigmas must be a floating-point tensor, got dtype {sigmas.dtype}")
    if sigmas[-1] != 0:
        raise ValueError(f"sigmas must end in 0 (the clean sample), got last value {sigmas[-1].item()}")
    # Only the first level may be inf: a zero-terminal-SNR schedule or a rectified-flow grid starts at pure noise.
    if not bool(torch.isfinite(sigmas[1:]).all()) or bool(torch.isnan(sigmas[0])) or sigmas[0] == -math.inf:
        raise ValueError(
            f"sigmas must be finite after the first level (only sigmas[0] may be inf, pure noise), got "
            f"{sigmas.tolist()[:8]}"
        )
    return check_decreasing("sigmas", sigmas)


def check_like(name: str, value: object, x: torch.Tensor, *, x_name: str = "x") -> torch.Tensor:
    """value if it is a tensor of the shape of x (noise, eps, x_t, ... beside x)."""
    if not isinstance(value, torch.Tensor) or value.shape != x.shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of the same shape as {x_name}, {tuple(x.shape)}; got {got}")
    return value


def check_batch(name: str, x: object) -> torch.Tensor:
    """x as given, after checking it is a floating-point tensor with a batch dimension, (B, ...)."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or not x.dtype.is_floating_point:
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point tensor of shape (B, ...), got {got}")
    return x


def check_level(name: str, value: object, x: torch.Tensor, interval: str) -> torch.Tensor:
    """A noise level (scalar or (B,)) as float64 (B or 1, 1, ..., 1) for x if it lies in interval, e.g. "(0, 1]"."""
    level = broadcast_like(value, x, name=name)
    if not x.dtype.is_floating_point:
        raise ValueError(f"x must be a floating-point tensor of shape (B, ...), got dtype {x.dtype}")
    low, high, low_in, high_in = _ends(interval)
    values = level.reshape(-1).tolist()  # B python floats: cheaper than tensor comparisons; NaN fails both tests
    if not all((low < v or low_in and v == low) and (v < high or high_in and v == high) for v in values):
        raise ValueError(f"{name} must lie in {interval}, got {values}")
    return level


@functools.cache
def _ends(interval: str) -> tuple[float, float, bool, bool]:
    """(low, high, low included, high included) of an interval written like "(0, 1]" or "[0, inf)"."""
    low, high = (float(end) for end in interval[1:-1].split(","))
    return low, high, interval[0] == "[", interval[-1] == "]"


def check_timestep(
    t: object, num_steps: int, x: torch.Tensor, *, of: str, name: str = "t", first: int = 0
) -> int | torch.Tensor:
    """t as an int or an integer tensor of shape () or (B,) for x, with every value in [first, num_steps - 1]."""
    if isinstance(t, torch.Tensor):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.ndim > 1:
            raise ValueError(
                f"{name} must be an int or an integer tensor of shape () or (B,), got dtype {t.dtype} "
                f"and shape {tuple(t.shape)}"
            )
        if t.ndim == 1 and t.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name} must be an int or have shape (B,) = ({x.shape[0]},) to match x of shape "
                f"{tuple(x.shape)}; got shape {tuple(t.shape)}"
            )
        values = t.reshape(-1).tolist()
    elif isinstance(t, Integral) and not isinstance(t, bool):
        values = [t]
    else:
        raise ValueError(f"{name} must be an int or an integer tensor of shape () or (B,), got {type(t).__name__}")
    if not all(first <= v < num_steps for v in values):
        got = t.tolist() if isinstance(t, torch.Tensor) else t
        raise ValueError(f"{name} must lie in [{first}, {num_steps - 1}] for {of} of length {num_steps}, got {got}")
    return t


def check_images(
    name: str, images: object, *, channels: tuple[int, ...] | None = None, min_size: int = 1
) -> torch.Tensor:
    """images as given, after checking it is a non-empty float batch (B, C, H, W), C in channels, H, W >= min_size."""
    ok = (
        isinstance(images, torch.Tensor)
        and images.ndim == 4
        and images.shape[0] > 0
        and images.dtype.is_floating_point
        and (channels is None or images.shape[1] in channels)
    )
    if not ok:
        got = f"shape {tuple(images.shape)}, dtype {images.dtype}" if isinstance(images, torch.Tensor) else type(images)
        with_c = "" if channels is None else f" with C in {list(channels)}"
        raise ValueError(f"{name} must be a non-empty floating-point tensor (B, C, H, W){with_c}, got {got}")
    if images.shape[2] < min_size or images.shape[3] < min_size:
        raise ValueError(f"{name} must be at least {min_size} x {min_size} pixels, got shape {tuple(images.shape)}")
    return images
