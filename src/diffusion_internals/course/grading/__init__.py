"""Checks for graded notebooks that fail with a message a learner can act on.

A hidden test that fails with a bare `AssertionError` teaches nothing. These helpers say
what was expected and what came out: the type, the shape, the dtype, the first value that
differs, and the tolerance, the way a good teaching assistant would. `check_sampler` is the
harness of the sampler exercises: the learner's sampler and the reference run on the same
inputs for every test denoiser and sigma grid (by default exact denoisers of 2-D toy data and
Karras grids), and a failure names its case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from diffusion_internals.denoisers import Denoiser, GaussianDenoiser, GaussianMixtureDenoiser
from diffusion_internals.schedules import sigmas_karras

__all__ = ["check_close", "check_equal", "check_sampler", "GradingError"]


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
        raise GradingError(f"{name}: expected a value but got None. Did the function forget to `return` its result?")
    kind = repr(value) if type(value).__name__ == "StudentObject" else f"an object of type {type(value).__name__}"
    raise GradingError(f"{name}: expected a tensor or a number, got {kind}.")


def check_close(
    name: str,
    got: Any,
    expected: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    check_dtype: bool = False,
) -> None:
    """Raise `GradingError` unless `got` matches `expected` in shape and in value within atol + rtol * |expected|."""
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
        diff = np.array(np.abs(got_f - exp_f))  # an array even for 0-d values, so it can be masked
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


def _describe_grid(sigmas: torch.Tensor) -> str:
    """The grid as a learner would write it: all values when short, the ends when long."""
    values = [f"{float(s):.4g}" for s in sigmas]
    shown = values if len(values) <= 5 else [*values[:2], "...", *values[-2:]]
    steps = len(values) - 1
    return f"sigmas [{', '.join(shown)}] ({steps} step{'s' if steps != 1 else ''})"


def _toy_denoisers() -> dict[str, Denoiser]:
    """Exact denoisers of 2-D data: one Gaussian (a linear ODE) and a 3-component mixture (a curved one)."""
    means, stds, weights = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.5]]), [0.2, 0.3, 0.25], [0.5, 0.3, 0.2]
    return {
        "the exact denoiser of a Gaussian": GaussianDenoiser(torch.tensor([0.3, -0.5]), torch.tensor([0.5, 0.8])),
        "the exact denoiser of a 3-component Gaussian mixture": GaussianMixtureDenoiser(means, stds, weights),
    }


def _toy_grids() -> list[torch.Tensor]:
    """Karras grids from one step (the last step alone) to twelve, with sigma_max from 10 to 80."""
    grids = ((1, 0.1, 10.0), (2, 0.1, 10.0), (5, 0.05, 40.0), (12, 0.002, 80.0))  # (steps, sigma_min, sigma_max)
    return [sigmas_karras(n, sigma_min, sigma_max) for n, sigma_min, sigma_max in grids]


def check_sampler(
    name: str,
    sampler: Callable[[Denoiser, torch.Tensor, torch.Tensor], Any],
    reference: Callable[[Denoiser, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    denoisers: Mapping[str, Denoiser] | None = None,
    sigma_grids: Sequence[torch.Tensor] | None = None,
    x_shape: tuple[int, ...] = (7, 2),
    seed: int = 0,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> None:
    """`check_close` sampler(D, x, sigmas) against reference(D, x, sigmas) for every denoiser and grid."""
    denoisers = _toy_denoisers() if denoisers is None else denoisers
    sigma_grids = _toy_grids() if sigma_grids is None else sigma_grids
    if not denoisers or not sigma_grids:  # a check with no case would give its points away
        raise ValueError(f"check_sampler needs denoisers and sigma_grids, got {len(denoisers)} and {len(sigma_grids)}")
    generator = torch.Generator().manual_seed(seed)
    for denoiser_name, denoiser in denoisers.items():
        for sigmas in sigma_grids:
            x = sigmas[0] * torch.randn(x_shape, generator=generator, dtype=sigmas.dtype)  # (B, ...) at sigma_max
            case = f"{name}({denoiser_name}, x of shape {tuple(x_shape)}, {_describe_grid(sigmas)})"
            expected = reference(denoiser, x.clone(), sigmas.clone())
            try:  # the learner's sampler gets its own copies: an in-place update cannot change the reference's input
                got = sampler(denoiser, x.clone(), sigmas.clone())
            except Exception as error:  # whatever the learner's code raises is reported with its case
                raise GradingError(f"{case}: raised {type(error).__name__}: {error}") from error
            check_close(case, got, expected, rtol=rtol, atol=atol)
