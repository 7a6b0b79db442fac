"""One step of the learned reverse process p(x_{t-1} | x_t) of DDPM, in the discrete timestep view.

Ho et al. (2020) parameterise the reverse step with the forward posterior q(x_{t-1} | x_t, x0)
(eqs. 6-7), plugging in the network's estimate of x0:

    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t),
    x_{t-1} = mu~_t(x_t, x0_hat) + sqrt(beta~_t) z,   z ~ N(0, I),

which expands to their eq. 11 / Algorithm 2 line 4,
``x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_t) + sqrt(beta~_t) z``, with
the "fixed small" variance beta~_t. At the last step (code index ``t = 0``) beta~ is 0 and the step
returns x0_hat. Indices are 0-based as in :mod:`diffusion_internals.forward`. The samplers of
chapter 3 (:func:`diffusion_internals.samplers.sample_ddpm`) run the same update on a sigma grid.
"""
from __future__ import annotations

import torch

from diffusion_internals.forward import _at, q_posterior
from diffusion_internals.parameterization import x0_from_eps

__all__ = ["ddpm_step"]


def ddpm_step(x_t: torch.Tensor, t: int | torch.Tensor, eps_hat: torch.Tensor, alphas_cumprod: torch.Tensor,
              noise: torch.Tensor) -> torch.Tensor:
    """x_{t-1} = posterior mean at x0_hat + sqrt(beta~_t) noise (Ho et al. 2020, eqs. 6-7 and 11, Algorithm 2)."""
    if not isinstance(noise, torch.Tensor) or noise.shape != x_t.shape:
        shape = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of the same shape as x_t, {tuple(x_t.shape)}; got {shape}")
    alpha_bar = _at("alphas_cumprod", alphas_cumprod, t, x_t)  # (B or 1, 1, ..., 1), checks t
    x0_hat = x0_from_eps(x_t, eps_hat, alpha_bar.reshape(-1) if alpha_bar.numel() > 1 else alpha_bar.reshape(()))
    mean, variance = q_posterior(x0_hat, x_t, t, alphas_cumprod)
    return (mean + variance.sqrt() * noise).to(x_t.dtype)
