"""Diffusion Internals: the course's small, exact reference package.

Each module holds one piece of the math and points back to its chapter:

- `schedules`: beta schedules, alphas_cumprod, SNR, timestep and sigma grids (chapter 1).
- `forward`: the forward process q(x_t | x_0), one Markov step, the posterior (chapter 1).
- `reverse`: one DDPM reverse step p(x_{t-1} | x_t) through the posterior, in timestep indices (chapter 2).
- `parameterization`: conversions between the eps, x0, v targets and the score (chapters 1-2).
- `denoisers`: the denoiser abstraction D(x, sigma) -> x0_hat, network wrappers, exact Gaussian denoisers (chapter 4).
- `samplers`: DDPM, DDIM, Euler, Heun, DPM2, LMS, DPM-Solver++, UniPC, CFG++ as plain functions (chapters 3-4).
- `sampling`: one front door, `sample(...)`, and the sampler names of UI menus mapped to ours and to diffusers' (chapter 4).
- `guidance`: classifier-free guidance and its fixes as denoiser wrappers (chapter 5).
- `noise`: per-sample reproducible noise.
- `data`, `models`, `training` (the simple loss, loss per timestep, the trainer), `train` (CLI), `pretrained`, `classifier`, `metrics`, `evaluation`, `pipeline`:
  the course's own small datasets, networks, trainer, committed checkpoints, FID and accuracy
  measures, and a diffusers pipeline for them (chapters 2-7). Import them by name; they pull in
  diffusers and scikit-learn, which the course extras install.
- `guidance_sweep` (import by name): the guidance-scale sweep with every fix, the optimal-scale rule, the committed sweep (chapter 5).
- `production` (import by name): diagnosing a shipped model's config against its weights, a capped guidance slider (Project C).
- `diagnostics` (import by name): sharpness, residual noise, contrast, finiteness per step, batch invariance (chapter 7).
- `sd` (import by name; needs diffusers and transformers): Stable Diffusion pipelines, a tiny offline one, and our own loop around their parts.
- `grading`: checks with learner-readable messages, used by the assignments' hidden tests.
"""
from importlib.metadata import PackageNotFoundError, version

from . import denoisers, forward, guidance, noise, parameterization, reverse, samplers, sampling, schedules

try:
    __version__ = version("diffusion-internals")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "denoisers",
    "forward",
    "guidance",
    "noise",
    "parameterization",
    "reverse",
    "samplers",
    "sampling",
    "schedules",
    "__version__",
]
