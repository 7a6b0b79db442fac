"""What every sampler shares: the ``@sampler`` decorator, the step helpers (to_d, the ancestral split, churn), noise.

Samplers work in the variance-exploding view of Karras et al. (2022): x = x0 + sigma * eps, and a
denoiser D(x, sigma, **cond) returns an estimate of x0.

A sampler is written as its algorithm alone and decorated with ``@sampler``::

    @sampler
    def sample_euler(denoiser, x, sigmas, *, callback, noise, s_churn=0.0, ...):
        for i in range(len(sigmas) - 1):
            ...
            denoised = denoiser(x, sigma)
            ...
            callback(x=x, i=i, sigma=sigma, sigma_next=sigma_next, denoised=denoised)
        return x

Inside, ``denoiser(x, sigma)`` is D with the conditioning bound, ``noise(sigma, sigma_next)`` draws standard
normal noise shaped like x (asked for only by the stochastic samplers) and ``callback`` is always callable.
``@sampler`` does the rest once for all samplers: the signature they share (extra_args, callback, noise,
progress) followed by the algorithm's own options, the checks of sigmas and options, ``torch.no_grad``, the
noise source and the progress bar.

**A first step from sigma = inf** (a zero-terminal-SNR schedule, a rectified-flow grid). There ``x`` holds
the pure noise z (see :mod:`diffusion_internals.denoisers`). As sigma -> inf, every step of DDIM, DDPM,
Euler, Euler ancestral and the DPM-Solver++ multistep samplers tends to the same limit,

    x' = D(z, inf) + sigma_next (sqrt(1 - rho^2) z + rho s_noise n),   n ~ N(0, I),

with rho, the share of fresh noise, set by the sampler's options (``sigma_up / sigma_next`` of the
ancestral split, 1 for DDPM and the SDE solvers, 0 for the ODE solvers); and their multistep corrections
vanish on the next steps, whose ratio of step sizes r = h_last / h is infinite. ``@sampler(at_infinity=rho)``
takes that step and hands the rest of the grid to the algorithm, as diffusers' DDIMScheduler does with
``rescale_betas_zero_snr=True, timestep_spacing="trailing"``. Heun, DPM-2, LMS, DPM++ 2S, UniPC and CFG++
evaluate or weight the model at a level derived from sigma (a trapezoid in sigma, a midpoint in log sigma,
polynomials through the past levels) and have no such limit: they raise and say what to use instead.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from numbers import Real
from typing import Any, Literal, get_args, get_origin

import torch

from diffusion_internals.denoisers import Denoiser
from diffusion_internals.utils import Generators, broadcast_like, randn_like
from diffusion_internals.validation import check_batch, check_choice, check_nonnegative, check_sigmas

__all__ = [
    "NoiseSampler",
    "Noise",
    "Denoiser",
    "Callback",
    "sampler",
    "check_options",
    "as_noise_sampler",
    "to_d",
    "ancestral_step",
    "noise_up",
    "churn",
    "FROM_INFINITY",
    "step_from_infinity",
]

# noise_sampler(sigma, sigma_next) -> a standard normal tensor shaped like x (k-diffusion's convention).
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Where a sampler's fresh noise comes from: a generator, one per sample, a noise_sampler, or None (the global RNG).
Noise = Generators | NoiseSampler
# callback(x=x_next, i=i, sigma=sigma_i, sigma_next=sigma_{i+1}, denoised=x0_hat), after each step.
Callback = Callable[..., object]

# Options with one meaning in every sampler that takes them, checked by name (s_tmax is checked against s_tmin).
NONNEGATIVE_OPTIONS = ("eta", "s_noise", "s_churn", "s_tmin")
# The samplers that can take their first step from sigma = inf, filled in by @sampler(at_infinity=...).
FROM_INFINITY: list[str] = []


def check_options(options: dict[str, Any], choices: Mapping[str, tuple]) -> dict[str, Any]:
    """The options, checked by name (eta, s_noise, s_churn, s_tmin >= 0; s_tmax >= s_tmin) or against their choices."""
    for name, value in options.items():
        if name in choices:
            check_choice(name, value, choices[name])
        elif name in NONNEGATIVE_OPTIONS:
            options[name] = check_nonnegative(name, value)
    if "s_tmax" in options:
        s_tmax, s_tmin = options["s_tmax"], options["s_tmin"]
        if isinstance(s_tmax, bool) or not isinstance(s_tmax, Real) or not s_tmax >= s_tmin:
            raise ValueError(f"s_tmax must be a number >= s_tmin = {s_tmin}, got {s_tmax!r}")
    return options


def as_noise_sampler(x: torch.Tensor, noise: Noise) -> NoiseSampler:
    """noise as a noise_sampler(sigma, sigma_next): a callable as it is, else N(0, I) like x from the generator(s)."""
    if callable(noise):
        return noise
    one_per_sample = (
        isinstance(noise, Sequence) and len(noise) == x.shape[0] and all(isinstance(g, torch.Generator) for g in noise)
    )
    if not (noise is None or isinstance(noise, torch.Generator) or one_per_sample):
        raise ValueError(
            f"noise must be None (the global RNG), a torch.Generator, a list of one per sample "
            f"(B = {x.shape[0]}) or a callable noise_sampler(sigma, sigma_next); got {noise!r}"
        )
    return lambda sigma, sigma_next: randn_like(x, noise)


@contextlib.contextmanager
def _after_each_step(callback: Callback | None, n_steps: int, progress: bool) -> Iterator[Callback]:
    """The callback an algorithm calls after each step: the caller's, if any, and a tqdm bar when progress=True."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps)

    def after_step(**state: Any) -> None:
        if bar is not None:
            bar.update()
        if callback is not None:
            callback(**state)

    try:
        yield after_step
    finally:
        if bar is not None:
            bar.close()


def sampler(
    algorithm: Callable[..., torch.Tensor] | None = None,
    *,
    denoise: Callable[[Any], Callable[..., Any]] | None = None,
    at_infinity: Callable[[dict[str, Any]], float] | None = None,
) -> Any:
    """Make a sampler of an algorithm: the shared signature, the checks, no_grad, D(x, sigma), noise, callback.

    The algorithm's keyword-only arguments other than ``callback`` and ``noise`` are its options; an option
    annotated ``Literal[...]`` must be one of those values, one annotated ``bool`` True or False. ``denoise``
    picks what the sampler calls, given the caller's denoiser (CFG++ calls ``guided_and_uncond``); by default
    the denoiser itself. ``at_infinity(options)`` is rho, the share of fresh noise in the sampler's limiting
    first step from sigma = inf (the module docstring); without it a grid starting at inf is refused.
    """
    if algorithm is None:
        return functools.partial(sampler, denoise=denoise, at_infinity=at_infinity)
    if at_infinity is not None:
        FROM_INFINITY.append(algorithm.__name__)
    own = inspect.signature(algorithm, eval_str=True).parameters
    options = [p for p in own.values() if p.kind is p.KEYWORD_ONLY and p.name not in ("callback", "noise")]
    defaults = {p.name: p.default for p in options}
    choices = {p.name: get_args(p.annotation) for p in options if get_origin(p.annotation) is Literal}
    choices.update({p.name: (True, False) for p in options if p.annotation is bool})
    takes_noise = "noise" in own

    def run(
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        extra_args: dict | None = None,
        callback: Callback | None = None,
        noise: Noise = None,
        progress: bool = False,
        **given: Any,
    ) -> torch.Tensor:
        unknown = [name for name in given if name not in defaults]
        if unknown:
            raise TypeError(f"{algorithm.__name__} got unknown options {unknown}; its options are {list(defaults)}")
        x = check_batch("x", x)
        sigmas = check_sigmas(sigmas)
        values = check_options({**defaults, **given}, choices)
        fn = denoiser if denoise is None else denoise(denoiser)
        if not callable(fn):
            raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **extra_args), got {type(fn).__name__}")
        if not (extra_args is None or isinstance(extra_args, Mapping)):
            raise TypeError(f"extra_args must be None or a dict of conditioning, got {type(extra_args).__name__}")
        if not (callback is None or callable(callback)):
            raise TypeError(
                f"callback must be None or callable as callback(x=, i=, ...), got {type(callback).__name__}"
            )
        check_choice("progress", progress, (True, False))
        cond = {} if extra_args is None else extra_args
        noise = as_noise_sampler(x, noise)

        def bound(x: torch.Tensor, sigma: float | torch.Tensor) -> Any:
            """D(x, sigma) with the conditioning bound, sigma repeated to (B,) (k-diffusion's sigma * s_in)."""
            return fn(x, x.new_full((x.shape[0],), float(sigma)), **cond)  # sigma: (B,), in the dtype of x

        with torch.no_grad(), _after_each_step(callback, len(sigmas) - 1, progress) as after_step:
            if math.isinf(sigmas[0]):
                if at_infinity is None:
                    raise ValueError(
                        f"{algorithm.__name__} cannot start at sigma = inf (sigmas[0], pure noise on a zero-terminal-"
                        f"SNR or rectified-flow grid): its step has no limit there. Use one of {FROM_INFINITY}, or "
                        f"a grid whose first sigma is finite"
                    )
                x, denoised = step_from_infinity(
                    bound, x, sigmas[1], noise, rho=at_infinity(values), s_noise=values.get("s_noise", 1.0)
                )
                after_step(x=x, i=0, sigma=sigmas[0], sigma_next=sigmas[1], denoised=denoised)
                if len(sigmas) == 2:
                    return x
                sigmas, step_callback = sigmas[1:], functools.partial(_shifted, after_step)
            else:
                step_callback = after_step
            return algorithm(
                bound, x, sigmas, callback=step_callback, **({"noise": noise} if takes_noise else {}), **values
            )

    # help() and inspect.signature show run's shared arguments, then the algorithm's options in place of **given.
    shared = inspect.signature(run, eval_str=True)
    functools.update_wrapper(run, algorithm)  # name, docstring, module; __wrapped__ is the algorithm
    run.__signature__ = shared.replace(parameters=[*list(shared.parameters.values())[:-1], *options])
    run.__annotations__ = {
        **{p.name: p.annotation for p in run.__signature__.parameters.values()},
        "return": shared.return_annotation,
    }
    return run


def _shifted(callback: Callback, *, i: int, **state: Any) -> None:
    """callback with the step index counted from the start of the whole grid (the first step was taken before)."""
    callback(i=i + 1, **state)


def step_from_infinity(
    denoiser: Callable[..., torch.Tensor],
    z: torch.Tensor,
    sigma_next: torch.Tensor,
    noise: NoiseSampler,
    *,
    rho: float,
    s_noise: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x', x0_hat): x' = D(z, inf) + sigma_next (sqrt(1 - rho^2) z + rho s_noise n), the sigma -> inf limit."""
    # DDIM (Song et al. 2021, eq. 12) as sigma -> inf: eps_hat = (x - x0_hat) / sigma -> z, sigma_up -> rho sigma_next.
    sigma = sigma_next.new_tensor(math.inf)
    denoised = denoiser(z, sigma)
    x = denoised + sigma_next * math.sqrt(1 - rho**2) * z
    if rho > 0 and sigma_next > 0:
        x = x + sigma_next * rho * s_noise * noise(sigma, sigma_next)
    return x, denoised


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma = (x - D(x, sigma)) / sigma, the probability-flow ODE (Karras et al. 2022, eq. 3 with sigma(t) = t)."""
    return (x - denoised) / broadcast_like(sigma, x).to(x.dtype)


def ancestral_step(
    sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_down, sigma_up), sigma_down^2 + sigma_up^2 = sigma_next^2; eta = 1 is DDPM (Song et al. 2021, eq. 16)."""
    if eta == 0:
        return sigma_next, torch.zeros_like(sigma_next)
    # Two numbers: python floats (float64), where each 0-d tensor op would cost a torch dispatch.
    s, s_next = float(sigma), float(sigma_next)
    sigma_up = min(s_next, eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
    sigma_down = math.sqrt(s_next**2 - sigma_up**2)
    return sigma_next.new_tensor(sigma_down), sigma_next.new_tensor(sigma_up)


def noise_up(
    x: torch.Tensor,
    sigma_up: torch.Tensor,
    noise: NoiseSampler,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """x + sigma_up * s_noise * z, the noise half of an ancestral step (no draw when sigma_up = 0)."""
    if sigma_up > 0:
        return x + sigma_up * s_noise * noise(sigma, sigma_next)
    return x


def churn(
    x: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    noise: NoiseSampler,
    *,
    n_steps: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_hat, sigma_hat): raise the noise level to (1 + gamma) sigma (Algorithm 2 lines 4-6, Karras et al. 2022)."""
    gamma = min(s_churn / n_steps, 2**0.5 - 1) if s_churn > 0 and s_tmin <= sigma <= s_tmax else 0.0
    if gamma == 0:
        return x, sigma  # no draw: k-diffusion draws (and discards) one randn_like(x) every step
    sigma_hat = sigma * (1 + gamma)
    eps = s_noise * noise(sigma, sigma_next)  # eps ~ N(0, s_noise^2 I)
    return x + (sigma_hat**2 - sigma**2) ** 0.5 * eps, sigma_hat
