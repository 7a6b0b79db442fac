"""Linear multistep (Adams-Bashforth on a non-uniform grid) for the probability-flow ODE.

The last ``order`` slopes d_i, d_{i-1}, ... are interpolated by a polynomial in sigma, which is
integrated over [sigma_i, sigma_{i+1}]: x_{i+1} = x_i + sum_j c_j d_{i-j} with
c_j = integral of the Lagrange basis polynomial l_j. k-diffusion integrates l_j numerically with
``scipy.integrate.quad``; a polynomial can be integrated exactly, which is what we do (the tests check
that the two agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from diffusion_internals.samplers.common import Callback, Denoiser, sampler, to_d

__all__ = ["sample_lms", "lms_coefficients"]


def lms_coefficients(sigmas: Sequence[float], i: int, order: int) -> list[float]:
    """c_j = integral over [sigma_i, sigma_{i+1}] of the Lagrange basis l_j on sigma_i, ..., sigma_{i-order+1}."""
    if not 1 <= order <= i + 1:
        raise ValueError(f"order must be between 1 and i + 1 = {i + 1} (the slopes available at step i), got {order}")
    # Shift the variable to u = sigma - sigma_i, so the polynomial is integrated over [0, h] with small nodes.
    nodes = [float(sigmas[i - j]) - float(sigmas[i]) for j in range(order)]
    h = float(sigmas[i + 1]) - float(sigmas[i])
    coefficients = []
    for j, node in enumerate(nodes):
        # l_j(u) = prod over k != j of (u - u_k) / (u_j - u_k), as power coefficients [a_0, a_1, ...] of u^0, u^1, ...
        basis = [1.0]
        for other in nodes[:j] + nodes[j + 1 :]:  # multiply by (u - other) / (node - other)
            basis = [(lower - other * same) / (node - other) for lower, same in zip([0.0, *basis], [*basis, 0.0])]
        # The integral over [0, h] of sum_n a_n u^n is sum_n a_n h^(n + 1) / (n + 1).
        coefficients.append(sum(a * h ** (n + 1) / (n + 1) for n, a in enumerate(basis)))
    return coefficients


@sampler
def sample_lms(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback: Callback, order: Literal[1, 2, 3, 4] = 4
) -> torch.Tensor:
    """Linear multistep in sigma: Adams-Bashforth on a non-uniform grid (Hairer et al. 1993, III.1; k-diffusion)."""
    sigma_values = sigmas.tolist()  # python floats, float64, for the coefficients
    ds: list[torch.Tensor] = []  # the last `order` slopes, newest first
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        ds = [to_d(x, sigma, denoised)] + ds[: order - 1]
        for c, d in zip(lms_coefficients(sigma_values, i, len(ds)), ds):
            x = x.add(d, alpha=c)  # x + c_j d_{i-j}, one pass over x per slope
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
    return x
