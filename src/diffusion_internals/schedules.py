"""Noise schedules as pure float64 functions: betas, alphas_cumprod, SNR, sigma grids, inference timesteps.

Indexing follows diffusers: a schedule of ``T`` training steps is indexed ``t = 0, ..., T - 1``, and
``betas[t]`` is the paper's ``beta_{t+1}`` (the papers count ``1, ..., T``). Nothing here rescales or
clamps silently: every endpoint and cap is a named option with the paper's default.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from diffusion_internals.validation import check_choice, check_int, check_real, check_tensor

__all__ = [
    "make_betas",
    "alphas_cumprod",
    "snr",
    "log_snr",
    "sigmas_from_alphas_cumprod",
    "alphas_cumprod_from_sigmas",
    "rescale_zero_terminal_snr",
    "inference_timesteps",
    "sigmas_karras",
    "sigmas_exponential",
    "sigmas_polyexponential",
    "sigmas_from_timesteps",
]

# The options each kind takes, with the defaults of the paper (or library) it comes from.
BETA_SCHEDULE_OPTIONS: dict[str, dict[str, float]] = {
    "linear": {"beta_start": 1e-4, "beta_end": 0.02},  # Ho et al. 2020, Sec. 4
    "scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012},  # Rombach et al. 2022 (Stable Diffusion)
    "cosine": {"s": 0.008, "max_beta": 0.999},  # Nichol & Dhariwal 2021, eq. 17 and Sec. 3.2
    "sqrt": {"s": 1e-4, "max_beta": 0.999},  # Li et al. 2022 (Diffusion-LM), Sec. 4.2 / App. A
    "sigmoid": {"beta_start": 1e-4, "beta_end": 0.02},  # Xu et al. 2022 (GeoDiff), with diffusers' endpoints
}
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


# ----------------------------------------------------------------------------- betas


def _betas_from_alpha_bar(
    alpha_bar: Callable[[torch.Tensor], torch.Tensor], num_steps: int, *, s: float, max_beta: float
) -> torch.Tensor:
    """beta_t = min(1 - alpha_bar(t+1) / alpha_bar(t), max_beta) (Nichol & Dhariwal 2021, Sec. 3.2)."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps  # (T + 1,) in [0, 1]
    values = alpha_bar(t)
    if not bool((values[:-1] > 0).all()):  # only alpha_bar(1) may reach 0 (or below, then capped)
        first = int(torch.nonzero(values[:-1] <= 0)[0])
        raise ValueError(
            f"s={s} makes alpha_bar(t/T) <= 0 already at t={first} of num_steps={num_steps}; "
            f"s must be smaller for this many steps"
        )
    return torch.clamp(1 - values[1:] / values[:-1], max=max_beta)  # the paper's clip, a named option


def make_betas(kind: str, num_steps: int = 1000, **options: float) -> torch.Tensor:
    """Betas of a named schedule in float64 (Ho 2020; Nichol & Dhariwal 2021, eq. 17; Li 2022; Xu 2022)."""
    check_choice("kind", kind, sorted(BETA_SCHEDULE_OPTIONS))
    num_steps = check_int("num_steps", num_steps, minimum=1)
    defaults = BETA_SCHEDULE_OPTIONS[kind]
    for name, value in options.items():
        if name not in defaults:
            raise ValueError(
                f"make_betas(kind={kind!r}) does not use option {name}={value!r}; its options are {', '.join(defaults)}"
            )
    opts = {**defaults, **options}

    if kind in ("linear", "scaled_linear", "sigmoid"):
        beta_start = check_real("beta_start", opts["beta_start"], lambda b: 0 < b < 1, "0 < beta_start < 1")
        beta_end = check_real(
            "beta_end", opts["beta_end"], lambda b: beta_start <= b < 1, f"beta_start ({beta_start}) <= beta_end < 1"
        )
        if kind == "linear":
            return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        if kind == "scaled_linear":  # linear in sqrt(beta)
            return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
        ramp = torch.linspace(-6, 6, num_steps, dtype=torch.float64)  # sigmoid
        return torch.sigmoid(ramp) * (beta_end - beta_start) + beta_start

    max_beta = check_real("max_beta", opts["max_beta"], lambda b: 0 < b <= 1, "0 < max_beta <= 1")
    if kind == "cosine":
        s = check_real("s", opts["s"], lambda v: v >= 0, "s >= 0")
        return _betas_from_alpha_bar(
            lambda t: torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2, num_steps, s=s, max_beta=max_beta
        )
    s = check_real("s", opts["s"], lambda v: 0 <= v < 1, "0 <= s < 1")  # sqrt
    return _betas_from_alpha_bar(lambda t: 1 - torch.sqrt(t + s), num_steps, s=s, max_beta=max_beta)


# ----------------------------------------------------------------------------- alphas_cumprod and SNR


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s) in float64 (Ho et al. 2020, eq. 4)."""
    betas = check_tensor("betas", betas, lambda b: (b > 0) & (b <= 1), "(0, 1]")
    return torch.cumprod(1 - betas, dim=0)


def _check_alphas_cumprod(values: torch.Tensor) -> torch.Tensor:
    return check_tensor("alphas_cumprod", values, lambda a: (a >= 0) & (a <= 1), "[0, 1]", one_dim=False)


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """SNR_t = alpha_bar_t / (1 - alpha_bar_t), i.e. alpha^2 / sigma^2 of VDM (Kingma et al. 2021, Sec. 2)."""
    a = _check_alphas_cumprod(alphas_cumprod)
    return a / (1 - a)


def log_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """log SNR_t = log alpha_bar_t - log(1 - alpha_bar_t) = -gamma_t of VDM (Kingma 2021); 2x DPM-Solver's lambda."""
    a = _check_alphas_cumprod(alphas_cumprod)
    return torch.log(a) - torch.log1p(-a)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), the VE view of a VP schedule (Karras et al. 2022, Table 1)."""
    a = _check_alphas_cumprod(alphas_cumprod)
    return torch.sqrt((1 - a) / a)  # alpha_bar = 0 gives sigma = inf; nothing is clamped


def alphas_cumprod_from_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """alpha_bar = 1 / (1 + sigma^2), the inverse of sigmas_from_alphas_cumprod (Karras et al. 2022, Table 1)."""
    sigma = check_tensor("sigmas", sigmas, lambda s: s >= 0, "[0, inf]", one_dim=False)
    return 1 / (1 + sigma**2)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so SNR_T = 0 and alpha_bar_0 is kept (Lin et al. 2024, Algorithm 1)."""
    sqrt_ab = torch.sqrt(alphas_cumprod(betas))
    if sqrt_ab.numel() < 2:
        raise ValueError(f"betas must have at least 2 entries to rescale, got {sqrt_ab.numel()}")
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * first / (first - last)  # sqrt_ab[-1] = 0, sqrt_ab[0] unchanged
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])  # undo the cumulative product
    return 1 - alphas


# ----------------------------------------------------------------------------- inference timesteps


def inference_timesteps(num_train_steps: int, num_steps: int, spacing: str, *, steps_offset: int = 0) -> torch.Tensor:
    """Descending 0-based timesteps for sampling with num_steps steps, as diffusers' DDIM (Lin et al. 2024, Table 2)."""
    num_train_steps = check_int("num_train_steps", num_train_steps, minimum=1)
    num_steps = check_int("num_steps", num_steps, minimum=1)
    if num_steps > num_train_steps:
        raise ValueError(f"num_steps must be <= num_train_steps ({num_train_steps}), got {num_steps}")
    check_choice("spacing", spacing, TIMESTEP_SPACINGS)
    steps_offset = check_int("steps_offset", steps_offset, minimum=0)
    if steps_offset and spacing != "leading":
        raise ValueError(
            f"steps_offset is only used with spacing='leading'; got steps_offset={steps_offset} "
            f"with spacing={spacing!r} (diffusers ignores it there)"
        )

    # The arithmetic below is diffusers' own (numpy, float64), so the grids agree bit for bit.
    if spacing == "linspace":  # iDDPM: round(linspace(0, T - 1, S)), includes 0 and T - 1
        timesteps = np.linspace(0, num_train_steps - 1, num_steps).round()[::-1]
    elif spacing == "leading":  # DDIM / LDM: 0, r, 2r, ... with integer r = T // S, plus an offset
        timesteps = np.arange(num_steps)[::-1] * (num_train_steps // num_steps) + steps_offset
        if timesteps[0] >= num_train_steps:
            raise ValueError(
                f"steps_offset={steps_offset} puts timestep {timesteps[0]} past the last training "
                f"step {num_train_steps - 1} (num_steps={num_steps})"
            )
    else:  # trailing (DPM-Solver): round(T, T - T/S, ..., T/S) - 1, always includes T - 1
        # numpy's float arange can overshoot by one element (e.g. T=1000, S=61; diffusers then
        # returns an extra timestep -1); the first num_steps entries are the grid.
        timesteps = np.round(np.arange(num_train_steps, 0, -num_train_steps / num_steps))[:num_steps] - 1
    return torch.from_numpy(timesteps.astype(np.int64))


# ----------------------------------------------------------------------------- sigma grids (end in 0)


def _check_sigma_grid(n: int, sigma_min: float, sigma_max: float) -> tuple[int, float, float]:
    n = check_int("n", n, minimum=1)
    sigma_min = check_real("sigma_min", sigma_min, lambda s: s > 0, "sigma_min > 0")
    sigma_max = check_real("sigma_max", sigma_max, lambda s: s > sigma_min, f"sigma_max > sigma_min ({sigma_min})")
    return n, sigma_min, sigma_max


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])  # (n,) -> (n + 1,)


def sigmas_karras(n: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0) -> torch.Tensor:
    """n sigmas evenly spaced in sigma^(1/rho) from sigma_max to sigma_min, then 0 (Karras et al. 2022, eq. 5)."""
    n, sigma_min, sigma_max = _check_sigma_grid(n, sigma_min, sigma_max)
    rho = check_real("rho", rho, lambda r: r > 0, "rho > 0")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def sigmas_exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """n sigmas evenly spaced in log sigma from sigma_max to sigma_min, then 0 (k-diffusion get_sigmas_exponential)."""
    n, sigma_min, sigma_max = _check_sigma_grid(n, sigma_min, sigma_max)
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp())


def sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, *, rho: float = 1.0) -> torch.Tensor:
    """log sigma = log sigma_min + ramp^rho (log sigma_max - log sigma_min), ramp 1 -> 0, then 0 (k-diffusion)."""
    n, sigma_min, sigma_max = _check_sigma_grid(n, sigma_min, sigma_max)
    rho = check_real("rho", rho, lambda r: r > 0, "rho > 0")
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def sigmas_from_timesteps(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma at each discrete timestep, sqrt((1 - alpha_bar_t) / alpha_bar_t), then 0 (Karras et al. 2022, Table 1)."""
    a = check_tensor("alphas_cumprod", alphas_cumprod, lambda v: (v >= 0) & (v <= 1), "[0, 1]")
    if not isinstance(timesteps, torch.Tensor) or timesteps.dtype.is_floating_point or timesteps.dtype == torch.bool:
        raise TypeError(f"timesteps must be an integer tensor, got {getattr(timesteps, 'dtype', type(timesteps))}")
    check_tensor("timesteps", timesteps, lambda t: (t >= 0) & (t < a.numel()), f"[0, {a.numel() - 1}]")
    return _append_zero(sigmas_from_alphas_cumprod(a[timesteps.to(a.device)]))
