"""Diffusion Internals: the course's small, exact reference package, in three layers.

The core (this folder), torch and numpy only; each module holds one piece of the math and points back to its chapter:

- `schedules`: beta schedules, alphas_cumprod, SNR, timestep and sigma grids (chapter 1).
- `forward`: the forward process q(x_t | x_0), one Markov step, the posterior (chapter 1).
- `reverse`: one DDPM or DDIM reverse step in timestep indices (chapters 2-3).
- `parameterization`: what a network predicts (eps, x0, v), the conversions and the training target (chapters 2, 4).
- `denoisers`: the denoiser abstraction D(x, sigma) -> x0_hat, network wrappers, exact Gaussian denoisers (chapter 4).
- `flow`: rectified flow in the sigma view: the path, a velocity network as a denoiser, the shifted grid (chapter 8).
- `preconditioning`: EDM's c_skip, c_out, c_in, c_noise, its training noise levels and loss weight (chapter 8).
- `samplers`: DDPM, DDIM, Euler, Heun, DPM2, LMS, DPM-Solver++, UniPC, CFG++ as plain functions (chapters 3-4).
- `sampling`: the front door, `sample(...)` and its grid `sigmas_for(...)`, and the UI menus' sampler names (chapter 4).
- `guidance`: classifier-free guidance and its fixes as denoiser wrappers (chapter 5).
- `diffusers_compat`: a UI sampler name as a diffusers scheduler; a diffusers scheduler's sigma grid.
- `utils`: the shape contract (`broadcast_like`) and per-sample reproducible noise.
- `validation`: the argument checks of the front doors, with messages that name the parameter.

Two layers on top, imported by name (they need the course extras: diffusers, scikit-learn, ...):

- `diffusion_internals.course`: the course's own world: data, models, training, committed checkpoints,
  metrics, evaluation, the guidance sweep, Project C's production tools, the digits pipeline, plotting,
  grading, and the training command line (`python -m diffusion_internals.course`).
- `diffusion_internals.sd`: Stable Diffusion pipelines, a tiny offline one, and our own loop around their parts.

The core never imports `course` or `sd`, and `sd` never imports `course` (tests/package/test_layout.py).
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    denoisers,
    diffusers_compat,
    flow,
    forward,
    guidance,
    parameterization,
    preconditioning,
    reverse,
    samplers,
    sampling,
    schedules,
    utils,
    validation,
)

try:
    __version__ = version("diffusion-internals")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "denoisers",
    "diffusers_compat",
    "flow",
    "forward",
    "guidance",
    "parameterization",
    "preconditioning",
    "reverse",
    "samplers",
    "sampling",
    "schedules",
    "utils",
    "validation",
    "__version__",
]
