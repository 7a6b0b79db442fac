"""Samplers: plain functions over one abstraction, a denoiser D(x, sigma, **cond) -> x0_hat.

Every sampler has the signature

    sample_<name>(denoiser, x, sigmas, *, extra_args=None, callback=None, generator=None,
                  progress=False, <algorithm options>) -> x0

with `x` the initial noise at sigmas[0] (x = x0 + sigmas[0] * eps, the variance-exploding view of
Karras et al. 2022), `sigmas` strictly decreasing and ending in 0, and
`callback(x=..., i=..., sigma=..., sigma_next=..., denoised=...)` called after each step.
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
