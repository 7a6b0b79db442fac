"""What a network predicts (eps, v or x0), the conversions between them and the score, and the training target.

With ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` (Ho et al. 2020, eq. 4) any two of
``x_t, x0, eps, v`` give the others. ``x`` tensors are ``(B, ...)``; ``alpha_bar`` is a scalar or
``(B,)`` (broadcast by :func:`diffusion_internals.utils.broadcast_like`). Results keep the
dtype of the first tensor argument; the schedule arithmetic is done in float64.

This module is the one home of the prediction types: the list, the target a network of each type
is trained on (:func:`training_target`), its eps (:func:`eps_from_prediction`) and its x0 in the
denoiser's view ``x = x0 + sigma eps`` (:func:`denoised_from_prediction`). Nothing else branches on
``prediction_type``.
"""

from __future__ import annotations

import torch

from diffusion_internals.validation import check_choice, check_level, check_like

__all__ = [
    "PREDICTION_TYPES",
    "SHORT_NAMES",
    "x0_from_eps",
    "eps_from_x0",
    "v_from_x0_eps",
    "x0_from_v",
    "eps_from_v",
    "score_from_eps",
    "training_target",
    "eps_from_prediction",
    "denoised_from_prediction",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # diffusers' names for an eps, v or x0 network
SHORT_NAMES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}  # the training command line's names


# ----------------------------------------------------------------------------- conversions at one noise level


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) (Ho et al. 2020, eq. 15)."""
    check_like("eps", eps, x_t, x_name="x_t")
    a = check_level("alpha_bar", alpha_bar, x_t, "(0, 1]")  # float64, (B or 1, 1, ..., 1)
    return ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).to(x_t.dtype)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar) (Ho et al. 2020, eq. 4 solved for eps)."""
    check_like("x0", x0, x_t, x_name="x_t")
    a = check_level("alpha_bar", alpha_bar, x_t, "[0, 1)")  # float64, (B or 1, 1, ..., 1)
    return ((x_t - a.sqrt() * x0) / (1 - a).sqrt()).to(x_t.dtype)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans & Ho 2022, Sec. 4)."""
    check_like("eps", eps, x0, x_name="x0")
    a = check_level("alpha_bar", alpha_bar, x0, "[0, 1]")  # float64, (B or 1, 1, ..., 1)
    return (a.sqrt() * eps - (1 - a).sqrt() * x0).to(x0.dtype)


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v (Salimans & Ho 2022, Sec. 4 and App. D)."""
    check_like("v", v, x_t, x_name="x_t")
    a = check_level("alpha_bar", alpha_bar, x_t, "[0, 1]")  # float64, (B or 1, 1, ..., 1)
    return (a.sqrt() * x_t - (1 - a).sqrt() * v).to(x_t.dtype)


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v (Salimans & Ho 2022, Sec. 4 and App. D)."""
    check_like("v", v, x_t, x_name="x_t")
    a = check_level("alpha_bar", alpha_bar, x_t, "[0, 1]")  # float64, (B or 1, 1, ..., 1)
    return ((1 - a).sqrt() * x_t + a.sqrt() * v).to(x_t.dtype)


def score_from_eps(eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """grad_x log q(x_t) ~= -eps / sqrt(1 - alpha_bar) (Song et al. 2021, eq. 7; Vincent 2011)."""
    a = check_level("alpha_bar", alpha_bar, eps, "[0, 1)")  # float64, (B or 1, 1, ..., 1)
    return (-eps / (1 - a).sqrt()).to(eps.dtype)


# ----------------------------------------------------------------------------- by prediction type


def training_target(
    prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor
) -> torch.Tensor:
    """The regression target: eps, v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0, or x0 (Salimans & Ho 2022)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return v_from_x0_eps(x0, eps, alpha_bar)
    return x0


def eps_from_prediction(
    prediction_type: str, x_t: torch.Tensor, prediction: torch.Tensor, alpha_bar: float | torch.Tensor
) -> torch.Tensor:
    """The eps a network's output implies at x_t: itself, eps_from_v or eps_from_x0 (Salimans & Ho 2022, Sec. 4)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return prediction
    if prediction_type == "v_prediction":
        return eps_from_v(x_t, prediction, alpha_bar)  # eps = sqrt(1 - a) x_t + sqrt(a) v
    return eps_from_x0(x_t, prediction, alpha_bar)  # eps = (x_t - sqrt(a) x0) / sqrt(1 - a)


def denoised_from_prediction(
    prediction_type: str, x: torch.Tensor, sigma: torch.Tensor, prediction: torch.Tensor
) -> torch.Tensor:
    """x0_hat = c_skip x + c_out F of a network F fed x / sqrt(1 + sigma^2) (Karras et al. 2022, Table 1).

    ``x`` is ``x0 + sigma eps``, ``(B, ...)``; ``sigma`` float64 ``(B or 1, 1, ..., 1)``; the result has x's dtype.
    Where sigma = inf, x is the pure noise eps (:mod:`diffusion_internals.denoisers`): a v network gives
    x0_hat = -v there (Lin et al. 2024, Sec. 3.2); an eps network gives no x0 at all and raises.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    at_infinity = torch.isinf(sigma)
    if prediction_type == "epsilon":  # c_skip = 1, c_out = -sigma
        if bool(at_infinity.any()):
            raise ValueError(
                "an epsilon-prediction network has no x0 estimate at sigma = inf (alpha_bar = 0): x0_hat = x - "
                "sigma eps is inf - inf. Start the grid at a finite sigma, or use a v-prediction model, as Lin et al. "
                "2024 do for zero terminal SNR"
            )
        return torch.addcmul(x, sigma.to(x.dtype), prediction, value=-1)  # x - sigma eps, one pass
    if prediction_type == "v_prediction":  # c_skip = c_in^2 = 1 / (sigma^2 + 1), c_out = -sigma c_in
        c_skip = (sigma**2 + 1).reciprocal()  # 0 at sigma = inf, where x is finite
        sigma_c_in = (1 + sigma**-2).rsqrt()  # sigma / sqrt(sigma^2 + 1): 1 at sigma = inf, 0 at sigma = 0
        return torch.addcmul(x * c_skip.to(x.dtype), sigma_c_in.to(x.dtype), prediction, value=-1)  # c_skip x + c_out v
    return prediction  # an x0 network: c_skip = 0, c_out = 1
