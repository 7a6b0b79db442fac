"""UniPC (Zhao et al. 2023): the unified predictor UniP and corrector UniC, data-prediction form.

Notation, in the sigma view x = x0 + sigma * eps of the other samplers:

    lambda = -log sigma            DPM-Solver's half log-SNR, log(alpha_t / sigma_t) (Lu et al. 2022)
    h = lambda_next - lambda > 0   the step in lambda
    D_k = D(x_k, sigma_k)          the data prediction x_theta of the paper
    r_k = (lambda_k - lambda) / h  where an earlier point sits, in units of h (r_k < 0; r = 1 is the new point)
    D1_k = (D_k - D) / r_k         scaled differences of data predictions

Both UniP and UniC take the exact first-order step (DPM-Solver++(1), i.e. DDIM) and add a weighted
sum of the differences (Zhao et al. 2023, Sec. 3.1, UniC-p, and Sec. 3.2, UniP-p; the x0-prediction
form is their appendix's, with h replaced by -h):

    x_next = (sigma_next / sigma) x - (e^{-h} - 1) D - B(-h) sum_k rho_k D1_k

with B(z) = z ("bh1") or e^z - 1 ("bh2"), and the weights rho solving the order conditions of
Theorem 3.1, R_p rho = g_p / B(-h), where R_p[i, k] = r_k^i and g_p[i] = i! (-h) phi_{i+1}(-h)
(phi_i the exponential-integrator functions). The predictor UniP-p uses the p - 1 earlier points;
the corrector UniC-p re-solves the step just taken with the new output D(x_next, sigma_next) as
the point r = 1, so it raises the order by one at no extra network call: NFE = len(sigmas) - 1.
The new output is not re-evaluated at the corrected point (the authors' and diffusers' choice).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from diffusion_internals.samplers.common import Callback, Denoiser, sampler

__all__ = ["sample_unipc"]


def _b_function(z: float, variant: str) -> float:
    """B(z) of the paper: z for "bh1", e^z - 1 for "bh2" (Zhao et al. 2023, Sec. 3.1)."""
    return z if variant == "bh1" else math.expm1(z)


def _weights(r: list[float], h: float, variant: str) -> tuple[list[float], float]:
    """(rho, B(-h)) solving R_p rho = g_p / B(-h) (Zhao et al. 2023, Theorem 3.1); r includes 1 for the corrector."""
    z = -h  # the data-prediction form runs the noise-prediction formulas with h -> -h
    b_z = _b_function(z, variant)
    p = len(r)
    if p == 0:
        return [], b_z
    # g[i - 1] = i! * z * phi_{i+1}(z), from z * phi_2(z) = (e^z - 1) / z - 1 and
    # z * phi_{i+2}(z) = z * phi_{i+1}(z) / z - 1 / (i + 1)!.
    g, z_phi, factorial = [], math.expm1(z) / z - 1, 1
    for i in range(1, p + 1):
        g.append(factorial * z_phi / b_z)
        factorial *= i + 1
        z_phi = z_phi / z - 1 / factorial
    if p == 1:  # UniC-1 and UniP-2: rho = 1/2, the h -> 0 limit of g_1 / B (the authors' choice)
        return [0.5], b_z
    R = torch.tensor([[r_k**i for r_k in r] for i in range(p)], dtype=torch.float64)  # (p, p)
    return torch.linalg.solve(R, torch.tensor(g, dtype=torch.float64)).tolist(), b_z


def _uni_step(
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    denoised: torch.Tensor,
    earlier: list[tuple[float, torch.Tensor]],
    variant: str,
    denoised_next: torch.Tensor | None = None,
) -> torch.Tensor:
    """One UniP-p step (denoised_next None, p = len(earlier) + 1) or UniC-p step (Zhao et al. 2023, Sec. 3)."""
    if sigma_next == 0:  # h = inf: only the first-order limit x_next = D is defined
        return denoised
    lam, h = -math.log(sigma), math.log(sigma / sigma_next)
    points = [((-math.log(sigma_k) - lam) / h, D_k) for sigma_k, D_k in earlier]  # (r_k, D_k)
    if denoised_next is not None:  # UniC: the new output is the point r = 1
        points.append((1.0, denoised_next))
    rho, b_z = _weights([r_k for r_k, _ in points], h, variant)
    # x_next = (sigma_next / sigma) x - (e^{-h} - 1) D - B(-h) sum_k rho_k (D_k - D) / r_k, computed as one
    # linear combination of x, D and the D_k with scalar weights c_k = B(-h) rho_k / r_k: one pass per tensor.
    c = [b_z * rho_k / r_k for rho_k, (r_k, _) in zip(rho, points)]
    x_next = torch.add(x * (sigma_next / sigma), denoised, alpha=sum(c) - math.expm1(-h))
    for c_k, (_, D_k) in zip(c, points):
        x_next.add_(D_k, alpha=-c_k)
    return x_next


@sampler
def sample_unipc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    order: Literal[1, 2, 3] = 2,
    variant: Literal["bh1", "bh2"] = "bh2",
    corrector: bool = True,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """UniPC-p with data prediction, multistep UniP-p plus UniC after every step (Zhao et al. 2023, Sec. 3)."""
    grid = sigmas.tolist()  # python floats (float64) for the scalar coefficient arithmetic
    n = len(grid) - 1
    history: list[tuple[float, torch.Tensor]] = []  # (sigma_k, D_k), newest first: the multistep memory
    last_step = None  # (x, sigma, sigma_next, D, earlier) of the last UniP step, which UniC re-solves

    for i in range(n):
        sigma, sigma_next = grid[i], grid[i + 1]
        denoised = denoiser(x, sigma)
        if corrector and last_step is not None:  # UniC-p: the same step, with D(x_i) as the point r = 1
            x = _uni_step(*last_step, variant, denoised_next=denoised)
        history = [(sigma, denoised)] + history[: order - 1]
        step_order = min(order, len(history), n - i if lower_order_final else order)  # warm-up, then final steps
        last_step = (x, sigma, sigma_next, denoised, history[1:step_order])
        x = _uni_step(*last_step, variant)  # UniP-p
        callback(x=x, i=i, sigma=sigmas[i], sigma_next=sigmas[i + 1], denoised=denoised)
    return x
