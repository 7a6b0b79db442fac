"""Shipping a custom model: check its saved configuration against its weights, and cap its guidance control (Project C).

1. **Diagnosis.** A network trained on one noise schedule (or prediction target) and sampled with
   another is told, at every step, a timestep that means a different noise level from the one in
   its input. :func:`diagnose` does not trust the configuration: on fixed data and noise it builds
   noisy inputs at a few noise levels (log SNR), and for every candidate schedule gives the network
   the timestep that schedule assigns to that level (:func:`timestep_for`); every candidate
   prediction type reads the output as an eps (:func:`eps_error_by_noise_level`: one unit, since
   at one noise level the eps error is SNR times the x0 error). The inputs and targets are the same
   for every hypothesis, so the one with the lowest error is the one the weights were trained on
   (for a Bayes-optimal network exactly; tested on exact networks for Gaussian data). It also
   checks that the null label that classifier-free guidance needs was trained (label dropout, Ho &
   Salimans 2021): an untrained null embedding makes the unconditional error much larger.
2. **A guidance slider for users.** :func:`slider_config` maps a guidance scale chosen on a
   slider capped at :data:`MAX_GUIDANCE` to the whole sampling configuration: the guidance_scale itself,
   the CFG rescale factor phi (Lin et al. 2024, eqs. 15-16) growing with it, dynamic thresholding
   (Saharia et al. 2022, Sec. 2.3) whenever guidance extrapolates, and the sampler. A scale off the
   slider is an error, not silently clamped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from diffusion_internals import schedules
from diffusion_internals.course.checkpoints import alphas_cumprod_for
from diffusion_internals.course.models import null_label
from diffusion_internals.denoisers import unwrap_output
from diffusion_internals.guidance import CFGDenoiser
from diffusion_internals.parameterization import PREDICTION_TYPES, eps_from_prediction
from diffusion_internals.sampling import resolve
from diffusion_internals.validation import check_choice, check_int, check_like, check_real

__all__ = [
    "CANDIDATE_SCHEDULES",
    "NULL_RATIO_THRESHOLD",
    "FINDINGS",
    "MAX_GUIDANCE",
    "Diagnosis",
    "SamplingConfig",
    "DEFAULT_LOG_SNRS",
    "timestep_for",
    "eps_error_by_noise_level",
    "diagnose",
    "slider_config",
    "FLAWS",
    "apply_flaw",
]

CANDIDATE_SCHEDULES = ("linear", "scaled_linear", "cosine", "sqrt")
# Uncond / cond eps error above this: the null label was never trained. Measured on 16 test images of the committed
# models: 1.08-1.16 with label dropout 0.1; 2.0 for digits-cosine-eps-no-dropout, 2.7 for a re-initialised null label.
NULL_RATIO_THRESHOLD = 1.5
FINDINGS = ("schedule", "prediction_type", "label_dropout")  # what diagnose can report, in this order
# The noise levels probed: log SNR -5, -4, ..., 3, inside the range of every candidate schedule (T = 1000: linear
# -10.1 to 9.2, cosine -19.8 to 10.1, sqrt -14.6 to 3.7, scaled_linear -5.4 to 7.1). Outside a schedule's range
# its hypothesis is handed its end timestep for a level it never had, and loses for that reason alone.
DEFAULT_LOG_SNRS = torch.linspace(-5.0, 3.0, 9, dtype=torch.float64)

MAX_GUIDANCE = 7.0  # the slider's cap
# Lin et al. 2024 (Sec. 3.4) use phi = 0.7 at their scales; on the client model 0.7 at scale 7 dulls colours well
# below the data (HSV saturation 0.44 against 0.55), 0.5 keeps them nearer; thresholding alone leaves 0.52.
RESCALE_AT_MAX = 0.5
THRESHOLD_PERCENTILE = 0.995  # Saharia et al. 2022, Sec. 2.3
THRESHOLD_MAX_VALUE = 1.5  # the largest s of dynamic thresholding (DeepFloyd IF); 1.0 would be static clipping
DEFAULT_SAMPLER, DEFAULT_STEPS = "DPM++ 2M Karras", 20


# ----------------------------------------------------------------------------- diagnosis


def timestep_for(alpha_bar: float, alphas_cumprod: torch.Tensor) -> int:
    """The timestep whose log-SNR is nearest that of alpha_bar: what a schedule calls this noise level (Kingma 2021)."""
    if isinstance(alpha_bar, bool) or not isinstance(alpha_bar, (int, float)) or not 0 < alpha_bar < 1:
        raise ValueError(f"alpha_bar must be a number in (0, 1), got {alpha_bar!r}")
    target = math.log(alpha_bar) - math.log1p(-alpha_bar)
    return int(torch.argmin((schedules.log_snr(alphas_cumprod) - target).abs()))  # log SNR = -inf at zero SNR: never


@torch.no_grad()
def eps_error_by_noise_level(
    model: torch.nn.Module,
    x0: torch.Tensor,
    noise: torch.Tensor,
    alpha_bars: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    prediction_type: str = "epsilon",
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eps error at each noise level alpha_bar, told the timestep a schedule gives it (Ho et al. 2020, eq. 14)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2:
        raise ValueError(f"x0 must be a tensor of shape (B, ...), got {getattr(x0, 'shape', type(x0).__name__)}")
    check_like("noise", noise, x0, x_name="x0")
    if (
        not isinstance(alpha_bars, torch.Tensor)
        or alpha_bars.ndim != 1
        or alpha_bars.numel() == 0
        or not bool(((alpha_bars > 0) & (alpha_bars < 1)).all())
    ):
        raise ValueError(
            f"alpha_bars must be a non-empty 1-D tensor of noise levels in (0, 1), got "
            f"{alpha_bars.tolist() if isinstance(alpha_bars, torch.Tensor) else alpha_bars!r}"
        )
    cond = {} if class_labels is None else {"class_labels": class_labels}
    errors = []
    for alpha_bar in alpha_bars.tolist():
        # The same noisy input for every hypothesis (Ho et al. 2020, eq. 4); only the timestep label differs.
        x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * noise
        t = torch.full((len(x0),), timestep_for(alpha_bar, alphas_cumprod), dtype=torch.int64)  # (B,)
        eps_hat = eps_from_prediction(prediction_type, x_t, unwrap_output(model(x_t, t, **cond)), alpha_bar)
        errors.append(float((eps_hat.double() - noise.double()).pow(2).mean()))
    return torch.tensor(errors, dtype=torch.float64)


@dataclass(frozen=True)
class Diagnosis:
    """What a model's configuration claims against what its weights measure; `findings` names the mismatches."""

    claimed_schedule: str
    trained_schedule: str
    claimed_prediction_type: str
    trained_prediction_type: str
    null_label_ratio: float | None  # mean uncond / mean cond eps error; None for an unconditional model
    first_step_snr_claimed: float  # SNR at the first timestep of the sampler's grid, claimed schedule
    first_step_snr_trained: float  # ... and the schedule the weights were trained on
    findings: tuple[str, ...] = ()
    errors: dict[tuple[str, str], float] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        """True when the configuration matches the weights and the null label is trained."""
        return not self.findings

    def corrected(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config with the measured schedule and prediction type in place of the claimed ones."""
        return {**config, "schedule": self.trained_schedule, "prediction_type": self.trained_prediction_type}


def diagnose(
    model: torch.nn.Module,
    config: dict[str, Any],
    x0: torch.Tensor,
    class_labels: torch.Tensor | None,
    *,
    log_snrs: torch.Tensor | None = None,
    candidates: Sequence[str] = CANDIDATE_SCHEDULES,
    generator: torch.Generator | None = None,
    sampling_steps: int = 50,
    null_ratio_threshold: float = NULL_RATIO_THRESHOLD,
) -> Diagnosis:
    """The schedule and prediction type the weights were trained on; is the null label trained (Ho & Salimans 2021)."""
    for key in ("schedule", "prediction_type", "num_train_timesteps"):
        if key not in config:
            raise ValueError(f"config must have schedule, prediction_type and num_train_timesteps; missing {key!r}")
    claimed_schedule = config["schedule"]
    claimed_prediction = check_choice("prediction_type", config["prediction_type"], PREDICTION_TYPES)
    num_train_timesteps = int(config["num_train_timesteps"])
    if isinstance(candidates, str) or not all(name in schedules.BETA_SCHEDULE_OPTIONS for name in candidates):
        raise ValueError(
            f"candidates must be a sequence of schedule names from "
            f"{sorted(schedules.BETA_SCHEDULE_OPTIONS)}, got {candidates!r}"
        )
    if (
        isinstance(null_ratio_threshold, bool)
        or not isinstance(null_ratio_threshold, (int, float))
        or not null_ratio_threshold > 1
    ):
        raise ValueError(f"null_ratio_threshold must be a number > 1, got {null_ratio_threshold!r}")
    if log_snrs is None:
        log_snrs = DEFAULT_LOG_SNRS
    if (
        not isinstance(log_snrs, torch.Tensor)
        or log_snrs.ndim != 1
        or log_snrs.numel() == 0
        or not bool(torch.isfinite(log_snrs).all())
    ):
        raise ValueError(f"log_snrs must be a non-empty 1-D tensor of finite log-SNR values, got {log_snrs!r}")
    alpha_bars = torch.sigmoid(log_snrs.to(torch.float64))  # alpha_bar = SNR / (1 + SNR)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)  # the same noise for every hypothesis

    # Every hypothesis keeps the config's zero_snr and T; the claim is always a candidate, listed first.
    names = [claimed_schedule] + [name for name in candidates if name != claimed_schedule]
    abar = {
        name: alphas_cumprod_for({**config, "zero_snr": bool(config.get("zero_snr", False)), "schedule": name})
        for name in names
    }
    predictions = [claimed_prediction] + [p for p in PREDICTION_TYPES if p != claimed_prediction]
    errors = {
        (name, p): float(
            eps_error_by_noise_level(
                model, x0, noise, alpha_bars, abar[name], prediction_type=p, class_labels=class_labels
            ).mean()
        )
        for name in names
        for p in predictions
    }
    trained_schedule, trained_prediction = min(errors, key=errors.get)  # ties keep the claim (listed first)

    null, ratio = null_label(model), None
    if null is not None and class_labels is not None:  # the unconditional pass of CFG, under the measured hypothesis
        uncond = eps_error_by_noise_level(
            model,
            x0,
            noise,
            alpha_bars,
            abar[trained_schedule],
            prediction_type=trained_prediction,
            class_labels=torch.full_like(class_labels, null),
        ).mean()
        ratio = float(uncond) / errors[(trained_schedule, trained_prediction)]

    spacing = "trailing" if config.get("zero_snr") else "leading"  # as checkpoints.ddim_scheduler
    first = int(schedules.inference_timesteps(num_train_timesteps, sampling_steps, spacing)[0])
    snr = {name: float(schedules.snr(abar[name])[first]) for name in (claimed_schedule, trained_schedule)}
    findings = tuple(
        name
        for name, found in (
            ("schedule", trained_schedule != claimed_schedule),
            ("prediction_type", trained_prediction != claimed_prediction),
            ("label_dropout", ratio is not None and ratio > null_ratio_threshold),
        )
        if found
    )
    return Diagnosis(
        claimed_schedule=claimed_schedule,
        trained_schedule=trained_schedule,
        claimed_prediction_type=claimed_prediction,
        trained_prediction_type=trained_prediction,
        null_label_ratio=ratio,
        first_step_snr_claimed=snr[claimed_schedule],
        first_step_snr_trained=snr[trained_schedule],
        findings=findings,
        errors=errors,
    )


# ----------------------------------------------------------------------------- the guidance slider


@dataclass(frozen=True)
class SamplingConfig:
    """Everything a guided sampling run needs besides the model: guidance_scale and its fixes, sampler name, steps."""

    guidance_scale: float
    rescale: float
    threshold: float | None
    threshold_max_value: float
    name: str  # a UI sampler name, a key of sampling.NAMED_SAMPLERS: sample_by_name(..., config.name, ...)
    steps: int

    def guided(self, denoiser: Any, uncond: dict[str, torch.Tensor]) -> CFGDenoiser:
        """The denoiser guided with this configuration (Ho & Salimans 2021; Lin et al. 2024; Saharia et al. 2022)."""
        return CFGDenoiser(
            denoiser,
            self.guidance_scale,
            uncond=uncond,
            rescale=self.rescale,
            threshold=self.threshold,
            threshold_max_value=self.threshold_max_value,
        )


def slider_config(guidance_scale: float, *, name: str = DEFAULT_SAMPLER, steps: int = DEFAULT_STEPS) -> SamplingConfig:
    """The configuration behind a slider position in [0, MAX_GUIDANCE] (Lin et al. 2024, eq. 16; Saharia 2022)."""
    guidance_scale = check_real(
        "guidance_scale",
        guidance_scale,
        lambda v: 0 <= v <= MAX_GUIDANCE,
        f"value in [0, {MAX_GUIDANCE}] (the slider's range; it is not clamped)",
    )
    resolve(name)  # unknown names raise, listing the known ones
    check_int("steps", steps, minimum=1)
    guiding = guidance_scale > 1  # below 1 CFG interpolates towards the unconditional model: nothing overshoots
    strength = min(1.0, max(0.0, (guidance_scale - 1) / (MAX_GUIDANCE - 1)))  # 0 at 1, 1 at the cap
    return SamplingConfig(
        guidance_scale=guidance_scale,
        rescale=RESCALE_AT_MAX * strength,
        threshold=THRESHOLD_PERCENTILE if guiding else None,
        threshold_max_value=THRESHOLD_MAX_VALUE,
        name=name,
        steps=steps,
    )


# ----------------------------------------------------------------------------- deliberately flawed checkpoints

# Deliberately flawed variants (Project C): what the saved configuration claims, against the truth.
FLAWS = {
    "claims-cosine": "trained on its own schedule, but training.json and scheduler_config.json claim schedule='cosine'",
    "claims-v-prediction": "trained to predict eps, but training.json and scheduler_config.json claim "
    "prediction_type='v_prediction'",
    "no-label-dropout": "trained with label_dropout=0: the null label's embedding is never trained, so the "
    "unconditional pass of classifier-free guidance is meaningless",
}


def apply_flaw(record: dict[str, Any], flaw: str) -> dict[str, Any]:
    """The record with the saved configuration made wrong as FLAWS[flaw] says, the truth kept under record['flaw']."""
    check_choice("flaw", flaw, FLAWS)
    record = dict(record)
    actual = {key: record[key] for key in ("schedule", "prediction_type", "label_dropout")}
    if flaw == "claims-cosine":
        if record["schedule"] == "cosine":
            raise ValueError("flaw='claims-cosine' needs a model trained on another schedule, got schedule='cosine'")
        record["schedule"] = "cosine"
    elif flaw == "claims-v-prediction":
        if record["prediction_type"] != "epsilon":
            raise ValueError(f"flaw='claims-v-prediction' needs an eps model, got {record['prediction_type']!r}")
        record["prediction_type"] = "v_prediction"
    elif record["label_dropout"] not in (0, 0.0):  # no-label-dropout is a training choice, checked here
        raise ValueError(f"flaw='no-label-dropout' needs label_dropout=0, got {record['label_dropout']}")
    record["flaw"] = {"name": flaw, "description": FLAWS[flaw], "actual": actual}
    return record
