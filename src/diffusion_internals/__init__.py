"""Diffusion Internals: the course's small, exact reference package.

Each module holds one piece of the math and points back to its chapter:

- `schedules`: beta schedules, alphas_cumprod, SNR, timestep and sigma grids (chapter 1).
- `forward`: the forward process q(x_t | x_0), one Markov step, the posterior (chapter 1).
- `parameterization`: conversions between the eps, x0, v targets and the score (chapters 1-2).
"""
from importlib.metadata import PackageNotFoundError, version

from . import forward, parameterization, schedules

try:
    __version__ = version("diffusion-internals")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["forward", "parameterization", "schedules", "__version__"]
