"""The bridge to diffusers' schedulers: a UI sampler name as a diffusers scheduler, and a scheduler's sigma grid.

``diffusers_scheduler("DPM++ 2M Karras", config)`` builds the diffusers scheduler that the scheduler overview of
diffusers maps to that name (the names and our recipes for them are in :mod:`diffusion_internals.sampling`);
``diffusers_sigmas(scheduler)`` reads the sigma grid a scheduler will step through, so that our samplers can run
on exactly the same grid. diffusers is imported only when a scheduler is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from diffusion_internals import schedules
from diffusion_internals.sampling import resolve

__all__ = ["DIFFUSERS_SCHEDULERS", "diffusers_scheduler", "diffusers_sigmas"]

# diffusers' scheduler overview ("A1111/k-diffusion -> Diffusers"): class name and constructor overrides.
DIFFUSERS_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2", "predict_x0": True}),
}
# Why the other samplers of the registry have none, by sampler.
_NO_DIFFUSERS = {
    "dpmpp_2s_ancestral": "the overview lists none (DPMSolverSinglestepScheduler is related but deterministic)",
    "dpmpp_3m_sde": "DPMSolverMultistepScheduler(solver_order=3, algorithm_type='sde-dpmsolver++') weights the "
    "second difference differently from k-diffusion's DPM++ 3M SDE",
}
# Grid switches that a config may carry over from another scheduler; a name without them turns them off.
_GRID_SWITCHES = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")


def diffusers_scheduler(name: str, config: Any) -> Any:
    """diffusers' scheduler for a UI sampler name, from a scheduler or its config (diffusers' scheduler overview)."""
    sampler = resolve(name).sampler  # unknown names raise, listing the known ones
    if name not in DIFFUSERS_SCHEDULERS:
        raise ValueError(
            f"diffusers has no scheduler equivalent to {name!r}: {_NO_DIFFUSERS[sampler]}. "
            f"Names with one: {list(DIFFUSERS_SCHEDULERS)}"
        )
    import diffusers

    if hasattr(config, "config") and isinstance(config.config, Mapping):  # a scheduler instance
        config = config.config
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a diffusers scheduler or its config (a mapping), got {type(config).__name__}")
    class_name, overrides = DIFFUSERS_SCHEDULERS[name]
    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    # Keep only what this class takes: from_config would store the other keys (a DPM-Solver config's
    # solver_order, say) in the new scheduler's config, where they mean nothing.
    config = {key: value for key, value in config.items() if key in accepted}
    switches = {key: False for key in _GRID_SWITCHES if key in accepted}
    return cls.from_config({**config, **switches, **overrides})


def diffusers_sigmas(scheduler: Any) -> torch.Tensor:
    """The sigma grid of a diffusers scheduler after set_timesteps, float64, ending in 0 (Karras et al. 2022, Tab 1)."""
    timesteps = getattr(scheduler, "timesteps", None)
    if getattr(scheduler, "num_inference_steps", None) is None or timesteps is None:
        raise ValueError(
            f"scheduler must be a diffusers scheduler after set_timesteps(), got "
            f"{type(scheduler).__name__} without inference timesteps"
        )
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None:  # DDIM, DDPM: the training sigma at each inference timestep
        return schedules.sigmas_from_timesteps(timesteps, scheduler.alphas_cumprod.double())
    sigmas = torch.unique_consecutive(sigmas.double())  # Heun and DPM2 repeat every inner sigma
    # A final sigma of sigma_min (final_sigmas_type="sigma_min") gets one more step, to 0.
    return sigmas if sigmas[-1] == 0 else torch.cat([sigmas, sigmas.new_zeros(1)])
