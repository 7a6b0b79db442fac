"""Samplers: plain functions over one abstraction, a denoiser D(x, sigma, **cond) -> x0_hat.

Every sampler has the signature

    sample_<name>(denoiser, x, sigmas, *, extra_args=None, callback=None, noise=None, progress=False,
                  <algorithm options>) -> x0

with `x` the initial noise at sigmas[0] (x = x0 + sigmas[0] * eps, the variance-exploding view of
Karras et al. 2022), `sigmas` strictly decreasing and ending in 0, `extra_args` the conditioning passed
to every denoiser call, and `callback(x=..., i=..., sigma=..., sigma_next=..., denoised=...)` called after
each step. `noise` is where the fresh noise of a stochastic step comes from:

* None: ``torch.randn_like(x)`` from the global RNG (as k-diffusion);
* a ``torch.Generator``, or a list of one per sample so that each sample depends on its own seed only
  (``utils.randn_like``; ``sampling.sample(generator=...)`` passes its generator here);
* a callable ``noise_sampler(sigma, sigma_next)`` returning standard normal noise shaped like x: k-diffusion's
  noise samplers (a Brownian tree, say), or a recorded sequence of draws.

Deterministic samplers accept it and draw nothing. Each sampler is written as its algorithm alone; the
shared part of the signature, the checks and ``torch.no_grad`` come from ``@sampler`` (``samplers.common``).
"""

from diffusion_internals.samplers.cfgpp import sample_ddim_cfgpp, sample_euler_cfgpp
from diffusion_internals.samplers.ddpm_ddim import sample_ddim, sample_ddpm
from diffusion_internals.samplers.dpm_solver import (
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
)
from diffusion_internals.samplers.karras import sample_dpm2, sample_euler, sample_euler_ancestral, sample_heun
from diffusion_internals.samplers.lms import sample_lms
from diffusion_internals.samplers.unipc import sample_unipc

__all__ = [
    "sample_ddpm",
    "sample_ddim",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_dpm2",
    "sample_lms",
    "sample_dpmpp_2m",
    "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_unipc",
    "sample_ddim_cfgpp",
    "sample_euler_cfgpp",
]
