"""Checks for graded notebooks that fail with a message a learner can act on.

A hidden test that fails with a bare `AssertionError` teaches nothing. These helpers say
what was expected and what came out: the type, the shape, the dtype, the first value that
differs, and the tolerance, the way a good teaching assistant would.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["check_close", "check_equal", "GradingError"]


class GradingError(AssertionError):
    """A failed check in a graded notebook; its message is written for the learner."""


def _as_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float, np.number)):
        return np.asarray(value)
    if value is None:
        raise GradingError(
            f"{name}: expected a value but got None. Did the function forget to `return` its result?"
        )
    raise GradingError(f"{name}: expected a tensor or a number, got an object of type {type(value).__name__}.")


def check_close(
    name: str,
    got: Any,
    expected: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    check_dtype: bool = False,
) -> None:
    """Raise `GradingError` unless `got` matches `expected` in shape and value (|got - expected| <= atol + rtol * |expected|)."""
    if check_dtype and isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            raise GradingError(f"{name}: expected a torch.Tensor, got {type(got).__name__}.")
        if got.dtype != expected.dtype:
            raise GradingError(f"{name}: expected dtype {expected.dtype}, got {got.dtype}.")
    got_a = _as_array(name, got)
    exp_a = _as_array(f"{name} (reference)", expected)
    if got_a.shape != exp_a.shape:
        raise GradingError(f"{name}: expected shape {tuple(exp_a.shape)}, got shape {tuple(got_a.shape)}.")
    if not np.issubdtype(got_a.dtype, np.number) and got_a.dtype != np.bool_:
        raise GradingError(f"{name}: expected numbers, got values of type {got_a.dtype}.")
    got_f = got_a.astype(np.float64)
    exp_f = exp_a.astype(np.float64)
    bad_values = ~np.isfinite(got_f) & np.isfinite(exp_f)
    if bad_values.any():
        index = tuple(int(i) for i in np.argwhere(bad_values)[0])
        raise GradingError(
            f"{name}: {int(bad_values.sum())} value(s) are NaN or infinite where a finite value is "
            f"expected; the first at index {index}: expected {exp_f[index]:.6g}, got {got_f[index]}."
        )
    close = np.isclose(got_f, exp_f, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        diff = np.abs(got_f - exp_f)
        diff[close] = 0.0
        index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        index = tuple(int(i) for i in index)
        where = f" at index {index}" if index else ""
        raise GradingError(
            f"{name}: {int((~close).sum())} of {close.size} value(s) differ from the reference. "
            f"Largest difference{where}: expected {exp_f[index]:.10g}, got {got_f[index]:.10g} "
            f"(difference {diff[index]:.3g}; allowed {atol:g} + {rtol:g} * |expected|)."
        )


def check_equal(name: str, got: Any, expected: Any) -> None:
    """Raise `GradingError` unless `got == expected` (for answers such as names and integers)."""
    if got != expected:
        raise GradingError(f"{name}: expected {expected!r}, got {got!r}.")
