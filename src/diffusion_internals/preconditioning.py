"""EDM preconditioning: how a network F becomes a denoiser, what it is trained on, and at which noise levels.

Karras et al. (2022, eq. 7 and Table 1) write every denoiser as

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),

and choose the four so that F's input and its training target have unit variance for data of std
sigma_data (their Appendix B.6):

    c_in = 1 / sqrt(sigma^2 + sigma_data^2),   c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
    c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),   c_noise = ln(sigma) / 4.

Training draws ln(sigma) ~ N(P_mean, P_std^2) and weights ||D - x0||^2 by
lambda(sigma) = 1 / c_out^2, which makes the loss on F an unweighted regression on
F_target = (x0 - c_skip x) / c_out. The familiar targets are special cases (tests/package/test_preconditioning.py):
with sigma_data = 1 these are exactly the v-prediction coefficients and F_target = -v (Salimans & Ho 2022);
eps-prediction is c_skip = 1, c_out = -sigma (Table 1, "VP").

This is the "schedule" of a model split in its two halves, as Dieleman (2024) asks: the training noise
distribution p(sigma) and weighting lambda(sigma) belong to training; the sampling grid (``sampling.sigmas_for``)
is chosen separately at inference.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from diffusion_internals.denoisers import unwrap_output
from diffusion_internals.validation import check_int, check_level, check_like, check_real

__all__ = [
    "EDM_SIGMA_DATA",
    "EDM_P_MEAN",
    "EDM_P_STD",
    "EDM_SIGMA_MIN",
    "EDM_SIGMA_MAX",
    "Preconditioning",
    "edm_preconditioning",
    "edm_target",
    "edm_loss_weight",
    "edm_training_sigmas",
    "EDMDenoiser",
]

EDM_SIGMA_DATA = 0.5  # Karras et al. 2022, Table 1 (images scaled to [-1, 1])
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2  # Karras et al. 2022, Table 1: ln(sigma) ~ N(P_mean, P_std^2)
EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0  # Karras et al. 2022, Table 1: the sampling range


class Preconditioning(NamedTuple):
    """c_skip, c_out, c_in, c_noise of D = c_skip x + c_out F(c_in x, c_noise), float64 like sigma."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def _check_sigma_data(sigma_data: float) -> float:
    return check_real("sigma_data", sigma_data, lambda v: v > 0, "sigma_data > 0")


def edm_preconditioning(sigma: float | torch.Tensor, *, sigma_data: float = EDM_SIGMA_DATA) -> Preconditioning:
    """c_skip, c_out, c_in, c_noise at sigma > 0 (Karras et al. 2022, Table 1 and eq. 7), float64 of sigma's shape."""
    sigma_data = _check_sigma_data(sigma_data)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if not bool(((sigma > 0) & torch.isfinite(sigma)).all()):
        raise ValueError(
            f"sigma must lie in (0, inf) for EDM preconditioning (c_noise = ln(sigma) / 4), got "
            f"{sigma.reshape(-1).tolist()[:8]}"
        )
    norm = (sigma**2 + sigma_data**2).rsqrt()  # 1 / sqrt(sigma^2 + sigma_data^2)
    return Preconditioning(
        c_skip=sigma_data**2 * norm**2,
        c_out=sigma * sigma_data * norm,
        c_in=norm,
        c_noise=sigma.log() / 4,
    )


def edm_target(
    x0: torch.Tensor, eps: torch.Tensor, sigma: float | torch.Tensor, *, sigma_data: float = EDM_SIGMA_DATA
) -> torch.Tensor:
    """F_target = (x0 - c_skip (x0 + sigma eps)) / c_out, the regression target of F (Karras et al. 2022, eq. 8)."""
    check_like("eps", eps, x0, x_name="x0")
    s = check_level("sigma", sigma, x0, "(0, inf)")  # float64, (B or 1, 1, ..., 1)
    c = edm_preconditioning(s, sigma_data=sigma_data)
    x = x0.to(torch.float64) + s * eps.to(torch.float64)
    return ((x0.to(torch.float64) - c.c_skip * x) / c.c_out).to(x0.dtype)


def edm_loss_weight(sigma: float | torch.Tensor, *, sigma_data: float = EDM_SIGMA_DATA) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2 (Karras et al. 2022, Table 1)."""
    return edm_preconditioning(sigma, sigma_data=sigma_data).c_out ** -2


def edm_training_sigmas(
    n: int, *, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD, generator: torch.Generator | None = None
) -> torch.Tensor:
    """n training noise levels with ln(sigma) ~ N(p_mean, p_std^2) (Karras et al. 2022, Table 1), float64 (n,)."""
    n = check_int("n", n, minimum=1)
    p_mean, p_std = check_real("p_mean", p_mean), check_real("p_std", p_std, lambda v: v > 0, "p_std > 0")
    return (p_mean + p_std * torch.randn(n, generator=generator, dtype=torch.float64)).exp()


class EDMDenoiser:
    """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) of a preconditioned network F (Karras et al. 2022, eq. 7)."""

    def __init__(
        self,
        model: Any,
        *,
        sigma_data: float = EDM_SIGMA_DATA,
        sigma_min: float = EDM_SIGMA_MIN,
        sigma_max: float = EDM_SIGMA_MAX,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Wrap model(c_in x, c_noise, **cond) -> F; sigma_min, sigma_max: the sampling range (EDM's defaults)."""
        if not callable(model):
            raise TypeError(f"model must be callable as model(x_in, c_noise, **cond), got {type(model).__name__}")
        self.sigma_data = _check_sigma_data(sigma_data)
        self.sigma_min = check_real("sigma_min", sigma_min, lambda v: v > 0, "sigma_min > 0")
        self.sigma_max = check_real("sigma_max", sigma_max, lambda v: v > self.sigma_min, f"sigma_max > {sigma_min}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be None (the dtype of x) or a floating-point torch.dtype, got {dtype!r}")
        self.model, self.dtype = model, dtype

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond: Any) -> torch.Tensor:
        """c_skip x + c_out F(c_in x, c_noise) at sigma in (0, inf) (Karras et al. 2022, eq. 7)."""
        if bool(torch.isinf(torch.as_tensor(sigma)).any()):
            raise ValueError(
                "an EDM network has no input at sigma = inf (c_noise = ln(sigma) / 4 is infinite, and EDM never "
                f"trains there): sample on a grid that starts at a finite sigma, e.g. schedule='karras' up to "
                f"sigma_max={self.sigma_max}"
            )
        s = check_level("sigma", sigma, x, "(0, inf)")  # float64, (B or 1, 1, ..., 1)
        c = edm_preconditioning(s, sigma_data=self.sigma_data)
        dtype = x.dtype if self.dtype is None else self.dtype
        c_noise = c.c_noise.reshape(-1).expand(x.shape[0]).to(device=x.device)  # (B,)
        c_noise = c_noise.to(torch.float64 if dtype == torch.float64 else torch.float32)
        out = unwrap_output(self.model((x * c.c_in.to(x.dtype)).to(dtype), c_noise, **cond))
        if out.shape != x.shape:
            raise ValueError(f"model output has shape {tuple(out.shape)}, expected the shape of x, {tuple(x.shape)}")
        return torch.addcmul(x * c.c_skip.to(x.dtype), c.c_out.to(x.dtype), out.to(x.dtype))
