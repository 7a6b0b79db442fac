"""Classifier-free guidance and the published fixes for its oversaturation, as denoiser wrappers.

Everything here acts on the denoiser's output x0_hat (the variance-exploding view: x = x0 + sigma * eps),
so it composes with every sampler in `diffusion_internals.samplers`.

Where each fix acts, here and in diffusers:

| fix                             | here   | diffusers                         | same result?                         |
|---------------------------------|--------|-----------------------------------|--------------------------------------|
| CFG (Ho & Salimans 2021)        | x0_hat | model output (eps or v)           | yes: x0_hat affine in eps at fixed x |
| rescale (Lin et al. 2024)       | x0_hat | model output, `rescale_noise_cfg` | no: std(x0_hat) != std(eps)          |
| dynamic thresholding (Imagen)   | x0_hat | x0 in the scheduler's step        | yes                                  |
| limited interval (Kynkaanniemi) | sigma  | (not in diffusers)                | parameterisation-free                |
| APG (Sadat et al. 2024)         | x0_hat | the paper's choice, on x0         | -                                    |

Lin et al. rescale their network's output, a v-prediction for their model; diffusers' `rescale_noise_cfg`
rescales whatever the pipeline's network outputs (the std of `noise_pred_text`: eps, or v for v-prediction
checkpoints). The limited interval has no default here: it is a per-model hyperparameter (Kynkaanniemi et
al. tuned theirs per EDM2 model; the course's digits interval is measured in `course.guidance_sweep`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_internals.utils import broadcast_like
from diffusion_internals.validation import check_choice, check_real

__all__ = [
    "cfg",
    "rescale_cfg",
    "dynamic_threshold",
    "in_interval",
    "APG",
    "apg_delta",
    "guidance_scale_schedule",
    "check_guidance_scale",
    "CFGDenoiser",
]

# The guidance strength, named as in diffusers: a number, or a function of sigma (guidance_scale_schedule).
# Unlike diffusers' Stable Diffusion pipelines, which skip guidance for every guidance_scale <= 1 and return the
# conditional prediction, here 0 is the unconditional model and values in (0, 1) interpolate (eq. 6 as written).
GuidanceScale = float | Callable[[torch.Tensor], torch.Tensor]
_ALLOWED_SCALE = "value >= 0 (1 = no guidance, 0 = unconditional)"


def check_guidance_scale(
    guidance_scale: object, *, name: str = "guidance_scale", allowed: str = _ALLOWED_SCALE
) -> float:
    """guidance_scale as a float if it is a finite number >= 0: 1 + w of Ho & Salimans 2021, eq. 6 (diffusers')."""
    return check_real(name, guidance_scale, lambda v: v >= 0, allowed)


def _per_sample_dims(x: torch.Tensor) -> list[int]:
    return list(range(1, x.ndim))  # every dimension but the batch


def cfg(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float | torch.Tensor) -> torch.Tensor:
    """uncond + guidance_scale * (cond - uncond) (Ho & Salimans 2021, eq. 6 with guidance_scale = 1 + w)."""
    # The paper writes (1 + w) * cond - w * uncond: guidance_scale = 1 + w, so w = 0 (guidance_scale 1) is the
    # conditional model, as diffusers' guidance_scale. Code that computes cond + (cond - uncond) * w uses the
    # paper's w = guidance_scale - 1.
    if isinstance(guidance_scale, torch.Tensor):
        if bool((guidance_scale < 0).any()):
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale.min().item()}")
        guidance_scale = broadcast_like(guidance_scale, cond, name="guidance_scale").to(cond.dtype)
    else:
        guidance_scale = check_guidance_scale(guidance_scale)
    if uncond.shape != cond.shape:
        raise ValueError(f"uncond and cond must have the same shape, got {tuple(uncond.shape)} and {tuple(cond.shape)}")
    return torch.lerp(uncond, cond, guidance_scale)  # exact at 0 (uncond) and 1 (cond)


def rescale_cfg(guided: torch.Tensor, cond: torch.Tensor, phi: float = 0.7) -> torch.Tensor:
    """The guided prediction rescaled to the conditional one's per-sample std, mixed by phi (Lin et al. 2024, 15-16)."""
    # Lin et al. apply it to their network's output (v for their model), diffusers to whatever the network outputs
    # (eps for most Stable Diffusion checkpoints). Applied to x0_hat it is a different operation:
    # std(x - sigma * eps) != sigma * std(eps) because x and eps are correlated. All are per-sample std matches;
    # on x0_hat it targets brightness directly.
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not 0 <= phi <= 1:
        raise ValueError(f"phi must be a number in [0, 1], got {phi!r}")
    if guided.shape != cond.shape:
        raise ValueError(f"guided and cond must have the same shape, got {tuple(guided.shape)} and {tuple(cond.shape)}")
    dims = _per_sample_dims(guided)
    std_cond = cond.std(dim=dims, keepdim=True)  # (B, 1, ..., 1), unbiased as in diffusers
    std_guided = guided.std(dim=dims, keepdim=True)
    rescaled = guided * (std_cond / std_guided)  # eq. 15
    return phi * rescaled + (1 - phi) * guided  # eq. 16


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """x0 clipped to [-s, s], over s = clamp(percentile of |x0|, 1, max_value) per sample (Saharia et al. 2022)."""
    # With max_value = 1 (diffusers' default sample_max_value) s is always 1: static clipping to [-1, 1].
    # Imagen's dynamic thresholding lets s grow: use max_value > 1 (DeepFloyd IF uses 1.5).
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 1:
        raise ValueError(f"percentile must be a number in (0, 1], got {percentile!r}")
    if isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or not max_value >= 1:
        raise ValueError(f"max_value must be a number >= 1, got {max_value!r}")
    work = x0 if x0.dtype in (torch.float32, torch.float64) else x0.float()  # quantile needs float32/64
    flat = work.reshape(work.shape[0], -1)  # (B, D)
    s = torch.quantile(flat.abs(), percentile, dim=1).clamp(min=1.0, max=max_value)[:, None]  # (B, 1)
    return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(x0.dtype)


def in_interval(sigma: torch.Tensor, interval: tuple[float, float]) -> torch.Tensor:
    """True where sigma lies in (sigma_lo, sigma_hi], where guidance is applied (Kynkaanniemi et al. 2024, eq. 2)."""
    sigma_lo, sigma_hi = _check_interval(interval)
    return (sigma > sigma_lo) & (sigma <= sigma_hi)


def _check_interval(interval: tuple[float, float]) -> tuple[float, float]:
    if not isinstance(interval, (tuple, list)) or len(interval) != 2:
        raise ValueError(f"interval must be a pair (sigma_lo, sigma_hi), got {interval!r}")
    sigma_lo, sigma_hi = (float(v) for v in interval)
    if not (0 <= sigma_lo < sigma_hi):
        raise ValueError(f"interval must satisfy 0 <= sigma_lo < sigma_hi, got {interval!r}")
    return sigma_lo, sigma_hi


@dataclass(frozen=True)
class APG:
    """Settings of adaptive projected guidance (Sadat et al. 2024, Algorithm 1): eta, norm threshold r, momentum."""

    eta: float = 0.0
    norm_threshold: float | None = None
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.eta, (int, float)) or not self.eta >= 0:
            raise ValueError(f"eta must be a number >= 0 (weight of the parallel component), got {self.eta!r}")
        if self.norm_threshold is not None and not self.norm_threshold > 0:
            raise ValueError(f"norm_threshold must be None or > 0, got {self.norm_threshold!r}")
        if not isinstance(self.momentum, (int, float)) or not -1 < self.momentum < 1:
            raise ValueError(
                f"momentum must be a number in (-1, 1) (the paper uses negative values), got {self.momentum!r}"
            )


def apg_delta(
    delta: torch.Tensor, cond: torch.Tensor, apg: APG, running: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The APG update direction and the new running average (Sadat et al. 2024, eqs. 8-12 and Algorithm 1)."""
    # Momentum (eq. 12): a running average of the difference with a (usually negative) weight beta.
    running = delta if running is None else delta + apg.momentum * running
    update = running
    dims = _per_sample_dims(update)
    if apg.norm_threshold is not None:  # rescale large updates to norm r (eq. 11)
        norm = update.norm(p=2, dim=dims, keepdim=True)  # (B, 1, ..., 1)
        update = update * torch.clamp(apg.norm_threshold / norm, max=1.0)
    # Split into the part parallel to the conditional prediction and the orthogonal rest (eqs. 8-9).
    unit = cond / cond.norm(p=2, dim=dims, keepdim=True).clamp_min(torch.finfo(cond.dtype).tiny)
    parallel = (update * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = update - parallel
    return orthogonal + apg.eta * parallel, running  # eq. 10: down-weight the parallel part


def guidance_scale_schedule(
    guidance_scale: float, *, kind: str = "constant", sigma_min: float, sigma_max: float, increasing: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A guidance_scale varying with sigma: constant, or a linear or cosine ramp in log sigma from 1 to its value."""
    guidance_scale = check_guidance_scale(guidance_scale)
    kinds = ("constant", "linear", "cosine")
    check_choice("kind", kind, kinds)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
        )
    log_min, log_max = math.log(sigma_min), math.log(sigma_max)

    def schedule(sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        # u = 0 at sigma_max (start of sampling) and 1 at sigma_min (end), clipped outside the range.
        u = ((log_max - sigma.clamp_min(sigma_min).log()) / (log_max - log_min)).clamp(0.0, 1.0)
        if not increasing:
            u = 1 - u  # full guidance_scale at high noise, fading to 1 at the end
        if kind == "constant":
            weight = torch.ones_like(u)
        elif kind == "linear":
            weight = u
        else:
            weight = 0.5 * (1 - torch.cos(math.pi * u))
        return 1 + (guidance_scale - 1) * weight

    return schedule


class CFGDenoiser:
    """Classifier-free guidance around a denoiser, one batched call per step, optional fixes (Ho & Salimans 2021)."""

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        guidance_scale: GuidanceScale,
        *,
        uncond: dict[str, torch.Tensor],
        rescale: float = 0.0,
        threshold: float | None = None,
        threshold_max_value: float = 1.0,
        interval: tuple[float, float] | None = None,
        apg: APG | None = None,
    ) -> None:
        if not callable(guidance_scale):
            check_guidance_scale(guidance_scale, allowed=_ALLOWED_SCALE + ", or a function of sigma")
        if not isinstance(uncond, dict) or not uncond:
            raise ValueError(
                "uncond must be a non-empty dict of the conditioning arguments of the unconditional pass, "
                "e.g. {'class_labels': null_label} or {'encoder_hidden_states': empty_prompt_embedding}"
            )
        if isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or not 0 <= rescale <= 1:
            raise ValueError(f"rescale (phi) must be a number in [0, 1], got {rescale!r}")
        if threshold is not None:
            dynamic_threshold(torch.zeros(1, 1), threshold, threshold_max_value)  # validates both
        if interval is not None:
            _check_interval(interval)
        if apg is not None and not isinstance(apg, APG):
            raise ValueError(f"apg must be None or an APG(...) settings object, got {type(apg).__name__}")
        self.denoiser, self.guidance_scale, self.uncond = denoiser, guidance_scale, uncond
        self.rescale, self.threshold, self.threshold_max_value = rescale, threshold, threshold_max_value
        self.interval, self.apg = interval, apg
        # APG's momentum needs the previous step's difference: the only state, reset at every new trajectory
        # (detected by sigma going up) and by reset().
        self._running: torch.Tensor | None = None
        self._last_sigma: float = math.inf

    # The wrapped denoiser's training schedule, so sampling.sample can build the sigma grid from a guided one.
    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """The wrapped denoiser's alphas_cumprod (AttributeError if it has none)."""
        return self.denoiser.alphas_cumprod

    @property
    def sigma_min(self) -> float:
        """The wrapped denoiser's smallest training sigma (AttributeError if it has none)."""
        return self.denoiser.sigma_min

    @property
    def sigma_max(self) -> float:
        """The wrapped denoiser's largest training sigma (AttributeError if it has none)."""
        return self.denoiser.sigma_max

    def reset(self) -> None:
        """Forget APG's running average (done automatically when sigma increases, i.e. a new sampling run)."""
        self._running, self._last_sigma = None, math.inf

    def _guidance_scale_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """guidance_scale at each sample's sigma, (B,) float64; a function of sigma may return a number or (B,)."""
        scale = self.guidance_scale(sigma) if callable(self.guidance_scale) else float(self.guidance_scale)
        return torch.as_tensor(scale, dtype=torch.float64, device=sigma.device).expand(sigma.shape)  # (B,)

    def _both(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(uncond, cond) predictions from one batched call of the wrapped denoiser."""
        batch = x.shape[0]
        merged = dict(cond)
        for name, value in self.uncond.items():
            if name not in cond:
                raise ValueError(f"uncond names {name!r}, which the conditional call does not pass (extra_args)")
            value = value.expand(batch, *value.shape[1:]) if value.shape[0] == 1 else value
            merged[name] = torch.cat([value.to(cond[name].device), cond[name]])  # (2B, ...)
        for name, value in cond.items():
            if name not in self.uncond and isinstance(value, torch.Tensor) and value.shape[:1] == (batch,):
                merged[name] = torch.cat([value, value])
        out = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **merged)  # (2B, ...)
        return out[:batch], out[batch:]

    def guided_and_uncond(
        self, x: torch.Tensor, sigma: float | torch.Tensor, **cond
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The guided x0_hat and the unconditional x0_hat (CFG++ renoises with the latter: Chung et al. 2024)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])  # (B,)
        if self.interval is not None and not bool(in_interval(sigma, self.interval).any()):
            d_cond = self.denoiser(x, sigma, **cond)  # no guidance anywhere in the batch: one pass
            return d_cond, d_cond
        d_uncond, d_cond = self._both(x, sigma, cond)
        scale = self._guidance_scale_at(sigma)  # (B,)
        if self.interval is not None:
            scale = torch.where(in_interval(sigma, self.interval), scale, torch.ones_like(scale))
        if self.apg is None:
            guided = cfg(d_uncond, d_cond, scale)
        else:
            if float(sigma.max()) > self._last_sigma:
                self.reset()
            self._last_sigma = float(sigma.max())
            update, self._running = apg_delta(d_cond - d_uncond, d_cond, self.apg, self._running)
            guided = d_cond + broadcast_like(scale - 1, d_cond).to(d_cond.dtype) * update
        if self.rescale > 0:
            guided = rescale_cfg(guided, d_cond, self.rescale)
        if self.threshold is not None:
            guided = dynamic_threshold(guided, self.threshold, self.threshold_max_value)
        return guided, d_uncond

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond) -> torch.Tensor:
        """The guided denoiser D_w(x, sigma) = D_u + w (D_c - D_u), with the configured fixes."""
        return self.guided_and_uncond(x, sigma, **cond)[0]
