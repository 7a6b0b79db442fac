"""One front door to the samplers: a sigma grid, initial noise and a sampler chosen by name.

``sample(denoiser, shape)`` does what a pipeline does around a sampler:

1. builds the sigma grid (ending in 0) from the denoiser's training schedule (``sigmas_for``):
   ``"karras"`` (Karras et al. 2022, eq. 5) and ``"exponential"`` are continuous grids between
   ``sigma_min`` and ``sigma_max``; ``"linspace"``, ``"leading"`` and ``"trailing"`` are the discrete
   timestep grids of diffusers (Lin et al. 2024, Table 2), mapped to sigma through ``alphas_cumprod``
   (on a zero-terminal-SNR schedule "trailing" and "linspace" start at sigma = inf); ``"flow"`` is the
   shifted rectified-flow grid, t from 1 to 0 as sigma = t / (1 - t) (:func:`diffusion_internals.flow.flow_sigmas`);
2. draws the initial noise at ``sigmas[0]``, see ``INIT_NOISE`` below;
3. runs the sampler, a plain function from :mod:`diffusion_internals.samplers`, whose step noise comes
   from the same ``generator`` (its ``noise`` argument).

The names users know from UI menus ("DPM++ 2M Karras", "Euler a", ...) are a sampler plus a grid
(``NAMED_SAMPLERS``, ``resolve``, ``sample_by_name``); :mod:`diffusion_internals.diffusers_compat` builds
diffusers' scheduler for the same name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from diffusion_internals import flow, samplers, schedules
from diffusion_internals.samplers.common import Callback, Denoiser
from diffusion_internals.utils import Generators, randn_like
from diffusion_internals.validation import check_choice, check_int

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "INIT_NOISE",
    "NAMED_SAMPLERS",
    "Recipe",
    "sigmas_for",
    "sample",
    "resolve",
    "sample_by_name",
]

SAMPLERS = {
    "ddpm": samplers.sample_ddpm,
    "ddim": samplers.sample_ddim,
    "euler": samplers.sample_euler,
    "euler_ancestral": samplers.sample_euler_ancestral,
    "heun": samplers.sample_heun,
    "dpm2": samplers.sample_dpm2,
    "lms": samplers.sample_lms,
    "dpmpp_2m": samplers.sample_dpmpp_2m,
    "dpmpp_2s_ancestral": samplers.sample_dpmpp_2s_ancestral,
    "dpmpp_2m_sde": samplers.sample_dpmpp_2m_sde,
    "dpmpp_3m_sde": samplers.sample_dpmpp_3m_sde,
    "unipc": samplers.sample_unipc,
}
CONTINUOUS_SCHEDULES = ("karras", "exponential")
SCHEDULES = CONTINUOUS_SCHEDULES + schedules.TIMESTEP_SPACINGS + ("flow",)

# Where the initial noise starts, x = scale * z with z ~ N(0, I):
#   "vp": scale = sqrt(1 + sigma_0^2). diffusers draws z as the VP sample x_T = sqrt(abar) x0 + sqrt(1 - abar) eps
#         and x = x_T / sqrt(abar); this is the exact marginal std of x0 + sigma_0 eps for unit-variance data.
#   "ve": scale = sigma_0, as k-diffusion and EDM (Karras et al. 2022, Algorithm 1 line 1): x0 is neglected.
# The default (None) is "vp" for a denoiser with a discrete training schedule (alphas_cumprod), as diffusers'
# DDPM/DDIM/DPM-Solver/UniPC schedulers; "ve" otherwise. (diffusers' Euler-type schedulers use "ve" with
# timestep_spacing "linspace" or "trailing" and "vp" with "leading": see their init_noise_sigma.)
# A grid starting at sigma_0 = inf (zero terminal SNR, the flow grid) starts from the pure noise x = z itself,
# the limit of "vp" (see diffusion_internals.denoisers); "ve" is refused there.
INIT_NOISE = ("vp", "ve")


class Recipe(NamedTuple):
    """A UI sampler name as a sampler of SAMPLERS, a schedule of SCHEDULES and sampler options."""

    sampler: str
    schedule: str
    options: Mapping[str, Any]


# The menu names of A1111 / ComfyUI-style UIs. Names without "Karras" use the model's own timestep grid;
# "linspace" (iDDPM spacing) is the closest of ours to k-diffusion's get_sigmas, which samples the same
# grid in t without rounding. DDIM and DDPM use "leading", diffusers' (and the DDIM paper's) spacing.
NAMED_SAMPLERS: dict[str, Recipe] = {
    "Euler": Recipe("euler", "linspace", {}),
    "Euler a": Recipe("euler_ancestral", "linspace", {}),
    "Heun": Recipe("heun", "linspace", {}),
    "DPM2": Recipe("dpm2", "linspace", {}),
    "LMS": Recipe("lms", "linspace", {}),
    "LMS Karras": Recipe("lms", "karras", {}),
    "DPM++ 2M": Recipe("dpmpp_2m", "linspace", {}),
    "DPM++ 2M Karras": Recipe("dpmpp_2m", "karras", {}),
    "DPM++ 2M SDE": Recipe("dpmpp_2m_sde", "linspace", {}),
    "DPM++ 2M SDE Karras": Recipe("dpmpp_2m_sde", "karras", {}),
    "DPM++ 2S a": Recipe("dpmpp_2s_ancestral", "linspace", {}),
    "DPM++ 2S a Karras": Recipe("dpmpp_2s_ancestral", "karras", {}),
    "DPM++ 3M SDE": Recipe("dpmpp_3m_sde", "linspace", {}),
    "DPM++ 3M SDE Karras": Recipe("dpmpp_3m_sde", "karras", {}),
    "DPM++ 3M SDE Exponential": Recipe("dpmpp_3m_sde", "exponential", {}),
    "DDIM": Recipe("ddim", "leading", {"eta": 0.0}),
    "DDPM": Recipe("ddpm", "leading", {}),
    "UniPC": Recipe("unipc", "linspace", {"order": 2, "variant": "bh2"}),
}


def sigmas_for(
    denoiser: Denoiser,
    steps: int,
    *,
    schedule: str = "karras",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    shift: float = 1.0,
    mu: float | None = None,
) -> torch.Tensor:
    """The float64 sigma grid of `steps` steps ending in 0 (Karras et al. 2022, eq. 5; Lin 2024; Esser 2024, eq. 23)."""
    steps = check_int("steps", steps, minimum=1)
    check_choice("schedule", schedule, SCHEDULES)
    if schedule != "karras" and rho != 7.0:
        raise ValueError(f"rho is only used by schedule='karras'; got rho={rho!r} with schedule={schedule!r}")
    if schedule != "flow" and (shift != 1.0 or mu is not None):
        raise ValueError(f"shift and mu are only used by schedule='flow'; got shift={shift!r}, mu={mu!r}")
    if schedule == "flow":
        if sigma_min is not None or sigma_max is not None:
            raise ValueError(
                f"schedule='flow' runs t from 1 to 0 (sigma from inf to 0); got sigma_min={sigma_min!r}, "
                f"sigma_max={sigma_max!r}"
            )
        return flow.flow_sigmas(steps, shift=shift, mu=mu)
    alphas_cumprod = getattr(denoiser, "alphas_cumprod", None)
    if schedule in schedules.TIMESTEP_SPACINGS:
        if sigma_min is not None or sigma_max is not None:
            raise ValueError(
                f"sigma_min and sigma_max are only used by the continuous schedules "
                f"{list(CONTINUOUS_SCHEDULES)}; schedule={schedule!r} takes the training timesteps "
                f"(got sigma_min={sigma_min!r}, sigma_max={sigma_max!r})"
            )
        if not isinstance(alphas_cumprod, torch.Tensor):
            raise ValueError(
                f"schedule={schedule!r} needs a denoiser with a discrete training schedule (an "
                f"alphas_cumprod attribute, e.g. DiscreteDenoiser); {type(denoiser).__name__} has "
                f"none: use one of {list(CONTINUOUS_SCHEDULES)}"
            )
        timesteps = schedules.inference_timesteps(len(alphas_cumprod), steps, schedule)
        return schedules.sigmas_from_timesteps(timesteps, alphas_cumprod)
    sigma_min = getattr(denoiser, "sigma_min", None) if sigma_min is None else sigma_min
    sigma_max = getattr(denoiser, "sigma_max", None) if sigma_max is None else sigma_max
    if sigma_min is None or sigma_max is None:
        raise ValueError(
            f"schedule={schedule!r} needs sigma_min and sigma_max: {type(denoiser).__name__} has no "
            f"training schedule to take them from; got sigma_min={sigma_min!r}, "
            f"sigma_max={sigma_max!r}"
        )
    # A 0-d tensor becomes a python float; anything else goes to the schedule's own check, which names it.
    sigma_min, sigma_max = (
        float(s) if isinstance(s, torch.Tensor) and s.ndim == 0 else s for s in (sigma_min, sigma_max)
    )
    if schedule == "karras":
        return schedules.sigmas_karras(steps, sigma_min, sigma_max, rho=rho)
    return schedules.sigmas_exponential(steps, sigma_min, sigma_max)


def sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    *,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    schedule: str = "karras",
    generator: Generators = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    shift: float = 1.0,
    mu: float | None = None,
    init_noise: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    **options: Any,
) -> torch.Tensor:
    """Draw x ~ N(0, scale^2 I) at sigmas[0] and run a sampler down the grid (Karras et al. 2022, Algorithm 1)."""
    check_choice("sampler", sampler, SAMPLERS)
    if init_noise not in (None, *INIT_NOISE):
        raise ValueError(f"init_noise must be None (automatic) or one of {list(INIT_NOISE)}, got {init_noise!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype (the dtype of x), got {dtype!r}")
    if isinstance(shape, torch.Size) or (isinstance(shape, Sequence) and not isinstance(shape, str)):
        shape = tuple(shape)
    if (
        not isinstance(shape, tuple)
        or not shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    ):
        raise ValueError(f"shape must be a non-empty sequence of ints >= 1, (B, ...), got {shape!r}")
    sigmas = sigmas_for(
        denoiser, steps, schedule=schedule, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, shift=shift, mu=mu
    )
    sigma_0 = float(sigmas[0])
    if math.isinf(sigma_0):  # pure noise: x holds z itself, the limit of x / sqrt(1 + sigma^2) (denoisers' docstring)
        if init_noise == "ve":
            raise ValueError(
                "init_noise='ve' draws x = sigma_0 z, infinite at sigma_0 = inf (this grid starts at pure noise); "
                "use init_noise=None or 'vp'"
            )
        scale = 1.0
    else:
        if init_noise is None:
            init_noise = "vp" if isinstance(getattr(denoiser, "alphas_cumprod", None), torch.Tensor) else "ve"
        scale = math.sqrt(1 + sigma_0**2) if init_noise == "vp" else sigma_0
    x = randn_like(torch.empty(shape, dtype=dtype, device=device), generator) * scale  # (B, ...)
    return SAMPLERS[sampler](
        denoiser,
        x,
        sigmas.to(x.device),
        extra_args=extra_args,
        callback=callback,
        noise=generator,
        progress=progress,
        **options,
    )


def resolve(name: str) -> Recipe:
    """The (sampler, schedule, options) behind a UI sampler name such as "DPM++ 2M Karras"."""
    recipe = NAMED_SAMPLERS[check_choice("name", name, NAMED_SAMPLERS)]
    return Recipe(recipe.sampler, recipe.schedule, dict(recipe.options))


def sample_by_name(
    denoiser: Denoiser, shape: Sequence[int], name: str, *, steps: int = 20, **kwargs: Any
) -> torch.Tensor:
    """sample() with the sampler, schedule and options of a UI name; kwargs go to sample() and the sampler."""
    recipe = resolve(name)
    for key in ("sampler", "schedule"):
        if key in kwargs:
            raise ValueError(
                f"{key} is set by the name {name!r} ({getattr(recipe, key)!r}); got {key}="
                f"{kwargs[key]!r}: call sample() to choose it yourself"
            )
    return sample(
        denoiser, shape, sampler=recipe.sampler, schedule=recipe.schedule, steps=steps, **{**recipe.options, **kwargs}
    )
