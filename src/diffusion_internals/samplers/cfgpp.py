"""CFG++ (Chung et al. 2024): guided denoising, but renoising with the unconditional prediction.

Plain CFG steps along the guided noise estimate, which pushes the sample off the data manifold at
large scales. CFG++ keeps the guided x0_hat, D_u + lambda (D_c - D_u), and renoises with the
*unconditional* eps_hat = (x - D_u) / sigma. Its scale lambda lives in [0, 1] (the paper's Table 1
pairs lambda = 0.6 with plain CFG at about guidance_scale = 7.5). It changes the sampler's update, so it is a
sampler, not a denoiser wrapper; the denoiser must be a `guidance.CFGDenoiser`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffusion_internals.samplers.common import Callback, NoiseSampler, ancestral_step, noise_up, sampler

__all__ = ["sample_ddim_cfgpp", "sample_euler_cfgpp"]


def guided_and_uncond(denoiser: Any) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """What CFG++ calls: a guidance.CFGDenoiser's (x, sigma, **cond) -> (guided x0_hat, unconditional x0_hat)."""
    if not hasattr(denoiser, "guided_and_uncond"):
        raise ValueError(
            "denoiser must be a guidance.CFGDenoiser (CFG++ needs the unconditional prediction too), "
            f"got {type(denoiser).__name__}"
        )
    return denoiser.guided_and_uncond


@sampler(denoise=guided_and_uncond)
def sample_ddim_cfgpp(
    denoiser: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
    noise: NoiseSampler,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM with CFG++: x_next = D_guided + sigma_down * eps_uncond + sigma_up * z (Chung et al. 2024, Algorithm 1)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        guided, uncond = denoiser(x, sigma)
        eps_uncond = (x - uncond) / sigma  # renoise direction
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = noise_up(guided + sigma_down * eps_uncond, sigma_up, noise, sigma, sigma_next)
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=guided)
    return x


@sampler(denoise=guided_and_uncond)
def sample_euler_cfgpp(
    denoiser: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback,
) -> torch.Tensor:
    """Euler with CFG++: x_next = D_guided + sigma_next * (x - D_uncond) / sigma (Chung et al. 2024, the ODE form)."""
    # In the sigma view this is DDIM's step with eta = 0; the two names match the menus.
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        guided, uncond = denoiser(x, sigma)
        x = guided + sigma_next * (x - uncond) / sigma
        callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=guided)
    return x
