"""Our samplers against diffusers' scheduler loops, from the same noise, on an exact toy network.

The network is a perfect eps-predictor for Gaussian-mixture data (support.eps_model_from_denoiser),
trained on diffusers' own alphas_cumprod, so both sides see the same function. Per sampler:

* diffusers: set_timesteps, x = randn * init_noise_sigma, then scale_model_input -> model -> step, in
  float32, its stochastic steps fed the noise we pre-draw (variance_noise=, or a generator whose draws
  we reproduce);
* ours: sampler(DiscreteDenoiser(model, alphas_cumprod), x, sigmas) in float64 on the scheduler's own
  sigma grid, ending in 0 (diffusers_compat.diffusers_sigmas). diffusers' DDIM/DDPM/DPM-Solver/UniPC carry the VP
  sample x_VP, so our x is x_VP * sqrt(1 + sigma_0^2); its Euler-type schedulers already carry x = x0 + sigma * eps.

Both sides run the same algorithm on the same grid, so what is left is diffusers' float32 arithmetic.
We measure it in units of ULP = 2^-23 (float32's spacing at 1) times the scale of the result, max |x0|
(about 3 here): a float32 result cannot be trusted below ~1 unit. Early roundings, made when |x| is
~15x larger, are contracted by the ODE (x0 depends on x_T through a factor ~ sigma_data / sigma_max),
so the error stays at a few units whatever the number of steps; observed errors are 0.6-3.3 units.
Every test allows 8 units (about 3e-6 here), and states what it observed: a wrong coefficient in any
step shows up at 1e-4 or more (each test was checked against a deliberately broken sampler).

Where diffusers rounds a timestep before calling the network (integer timesteps, or Karras sigmas
mapped back to rounded timesteps), the denoiser quantizes too (quantize=True): the model sees the same
t on both sides. Timestep spacings are chosen so the model's timesteps are integers; with diffusers'
default "linspace" the Euler-type schedulers interpolate sigma linearly in t (np.interp) while
k-diffusion and our DiscreteDenoiser interpolate log sigma, a known difference of modelling, not of
the sampler, kept out of these tests.

Discrepancies found (documented per test below):
* UniPC, variant "bh1", final_sigmas_type="zero": diffusers returns NaN at the last step
  (B(h) = h = inf multiplies an empty sum); ours returns D(x, sigma_min) there, the h -> inf limit.
* UniPC with order 3 and lower_order_final=False, final sigma 0: diffusers' linear solve is singular;
  ours again ends with x = D.
* DPMSolverMultistepScheduler(solver_order=3, algorithm_type="sde-dpmsolver++") is not
  k-diffusion's DPM++ 3M SDE: it weights the second difference D2 by (1 - e^{-2h} - 2h) / (2h)^2 - 1/2
  where DPM++ 3M SDE has (1 - e^{-2h} - 2h) / (2h)^2 + 1/2, so diffusers_compat.diffusers_scheduler refuses it.
* diffusers' DPM-Solver multistep uses first order at the last step whenever the final sigma is 0
  (final_sigmas_type="zero"), as k-diffusion does; euler_at_final and lower_order_final change nothing
  more for solver_order=2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import diffusers
import pytest
import torch
from support import eps_model_from_denoiser

from diffusion_internals import samplers
from diffusion_internals.course import kdiffusion
from diffusion_internals.denoisers import DiscreteDenoiser, GaussianMixtureDenoiser
from diffusion_internals.diffusers_compat import diffusers_sigmas

ULP = 2.0**-23  # float32's spacing at 1, twice its unit roundoff
UNITS = 8  # the tolerance of every parity test, in ULP x max |x0| (see the module docstring)
SHAPE = (3, 2, 4, 4)  # (B, C, H, W)
MIXTURE = GaussianMixtureDenoiser(
    torch.randn((3,) + SHAPE[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    torch.tensor([0.4, 0.7, 0.5]),
    torch.tensor([0.3, 0.3, 0.4]),
)
SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
DDPM_LINEAR = {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}


def draws(n: int, seed: int) -> list[torch.Tensor]:
    """n standard normal float32 tensors of SHAPE from one seeded generator, in the order diffusers draws them."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=generator) for _ in range(n)]


def keyed_noise(sigmas: torch.Tensor, noises: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    """noise_sampler(sigma, sigma_next) returning noises[i] for the step that starts at sigmas[i]."""

    def noise_sampler(sigma, sigma_next):
        i = int(torch.argmin((sigmas - float(sigma)).abs()))
        return noises[i].double()

    return noise_sampler


def run_pair(
    scheduler,
    sampler,
    *,
    vp: bool,
    quantize: bool,
    steps: int,
    noises: list[torch.Tensor] | None = None,
    step_kwargs: Callable[[int], dict] = lambda k: {},
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ours in float64, diffusers' in float32) from one initial noise on the scheduler's own grid."""
    scheduler.set_timesteps(steps)
    alphas_cumprod = scheduler.alphas_cumprod.double()  # the very schedule diffusers uses (float32 values)
    model = eps_model_from_denoiser(MIXTURE, alphas_cumprod)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    x = z * scheduler.init_noise_sigma
    for k, t in enumerate(scheduler.timesteps):
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, **step_kwargs(k)).prev_sample
    sigmas = diffusers_sigmas(scheduler)
    x_ours = z.double() * float(scheduler.init_noise_sigma) * (math.sqrt(1 + sigmas[0].item() ** 2) if vp else 1.0)
    if noises is not None:
        options["noise"] = keyed_noise(sigmas, noises)
    ours = sampler(DiscreteDenoiser(model, alphas_cumprod, quantize=quantize), x_ours, sigmas, **options)
    return ours, x.double()


def error_units(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| in units of ULP x max |theirs|."""
    return (ours - theirs).abs().max().item() / (ULP * theirs.abs().max().item())


def assert_parity(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """|ours - theirs| <= UNITS x ULP x max |theirs|, with the observed error in the message."""
    observed = error_units(ours, theirs)
    assert observed <= UNITS, f"max |ours - diffusers| = {observed:.3g} x 2^-23 x max|x0| > {UNITS} (float32 precision)"


# ----------------------------------------------------------------------------- DDIM and DDPM


def test_ddim_eta_0():
    # 20 leading steps, integer timesteps (diffusers' DDIM default spacing). Observed 1.6 units.
    scheduler = diffusers.DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=True)
    ours, theirs = run_pair(scheduler, samplers.sample_ddim, vp=True, quantize=True, steps=20)
    assert_parity(ours, theirs)


def test_ddim_eta_1_with_shared_noise():
    # DDIM step(eta=1, variance_noise=noise_k); our sample_ddim(eta=1) draws noise_k at step k through
    # noise_sampler. The fresh noise is not contracted, but enters at sigma_up <= sigma_next. Observed 1.2 units.
    noises = draws(20, seed=2)
    scheduler = diffusers.DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=True)
    ours, theirs = run_pair(
        scheduler,
        samplers.sample_ddim,
        vp=True,
        quantize=True,
        steps=20,
        eta=1.0,
        noises=noises,
        step_kwargs=lambda k: {"eta": 1.0, "variance_noise": noises[k]},
    )
    assert_parity(ours, theirs)


def test_ddpm_with_reproduced_generator_draws():
    # DDPMScheduler.step draws randn(shape, generator) at every step with t > 0, in order; we pass it a
    # generator seeded like draws(), whose k-th tensor is then the noise of step k on our side.
    # Linear betas (Ho et al. 2020), fixed_small variance (beta-tilde), no clipping; 25 leading steps.
    # diffusers computes the posterior mean from alphas_cumprod in float32 products. Observed 2.6 units.
    steps = 25
    noises = draws(steps, seed=3)
    generator = torch.Generator().manual_seed(3)
    scheduler = diffusers.DDPMScheduler(**DDPM_LINEAR, clip_sample=False, variance_type="fixed_small")
    ours, theirs = run_pair(
        scheduler,
        samplers.sample_ddpm,
        vp=True,
        quantize=True,
        steps=steps,
        noises=noises,
        step_kwargs=lambda k: {"generator": generator},
    )
    assert_parity(ours, theirs)


# ----------------------------------------------------------------------------- Karras-type samplers


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler(spacing):
    # Integer timesteps (no np.interp of sigma), so the model sees the same t; init_noise_sigma is
    # sqrt(1 + sigma_max^2) for "leading" and sigma_max for "trailing", both reproduced. Observed 0.66 units.
    scheduler = diffusers.EulerDiscreteScheduler(**SD, timestep_spacing=spacing)
    ours, theirs = run_pair(scheduler, samplers.sample_euler, vp=False, quantize=True, steps=20)
    assert_parity(ours, theirs)


def test_euler_ancestral_with_reproduced_generator_draws():
    # EulerAncestralDiscreteScheduler.step draws randn(shape, generator) at every step, the last included
    # (where sigma_up = 0), so draws()'s k-th tensor is step k's noise. Observed 0.65 units.
    steps = 20
    noises = draws(steps, seed=4)
    generator = torch.Generator().manual_seed(4)
    scheduler = diffusers.EulerAncestralDiscreteScheduler(**SD, timestep_spacing="trailing")
    ours, theirs = run_pair(
        scheduler,
        samplers.sample_euler_ancestral,
        vp=False,
        quantize=True,
        steps=steps,
        noises=noises,
        step_kwargs=lambda k: {"generator": generator},
    )
    assert_parity(ours, theirs)


def test_heun():
    # diffusers runs Heun as two step() calls per step (its timesteps are doubled); the last step is
    # plain Euler on both sides (k-diffusion: sigma_next = 0). Observed 0.98 units.
    scheduler = diffusers.HeunDiscreteScheduler(**SD, timestep_spacing="trailing")
    ours, theirs = run_pair(scheduler, samplers.sample_heun, vp=False, quantize=True, steps=15)
    assert_parity(ours, theirs)


def test_lms():
    # Order 4 on both sides. diffusers integrates the Lagrange basis with scipy.integrate.quad (exact for
    # these cubics up to float64 rounding), then adds four float32 products per step. Observed 3.3 units,
    # the largest here: four stored float32 derivatives, each rounded once more than x.
    scheduler = diffusers.LMSDiscreteScheduler(**SD, timestep_spacing="trailing")
    ours, theirs = run_pair(
        scheduler, samplers.sample_lms, vp=False, quantize=True, steps=20, step_kwargs=lambda k: {"order": 4}
    )
    assert_parity(ours, theirs)


# ----------------------------------------------------------------------------- DPM-Solver++ and UniPC


@pytest.mark.parametrize("karras", [False, True])
def test_dpmpp_2m(karras):
    # Karras sigmas are mapped back to timesteps that diffusers rounds, while the update keeps the
    # unrounded sigma: quantize=True reproduces exactly that. First order at the last step on both sides.
    # Observed 1.1 (plain) and 2.0 (Karras) units.
    scheduler = diffusers.DPMSolverMultistepScheduler(
        **SD, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=karras
    )
    ours, theirs = run_pair(scheduler, samplers.sample_dpmpp_2m, vp=True, quantize=True, steps=20)
    assert_parity(ours, theirs)


def test_dpmpp_2m_sde_with_shared_noise():
    # sde-dpmsolver++ with the midpoint solver is k-diffusion's DPM++ 2M SDE (eta = 1); step() takes
    # variance_noise, the k-th pre-drawn tensor, which our noise_sampler returns for step k. Observed 2.5 units.
    noises = draws(20, seed=5)
    scheduler = diffusers.DPMSolverMultistepScheduler(**SD, algorithm_type="sde-dpmsolver++", solver_order=2)
    ours, theirs = run_pair(
        scheduler,
        samplers.sample_dpmpp_2m_sde,
        vp=True,
        quantize=True,
        steps=20,
        noises=noises,
        step_kwargs=lambda k: {"variance_noise": noises[k]},
    )
    assert_parity(ours, theirs)


@pytest.mark.parametrize("order, spacing", [(2, "linspace"), (2, "trailing"), (3, "linspace"), (1, "linspace")])
def test_unipc_bh2(order, spacing):
    # Predictor and corrector share one model call per step (NFE = steps on both sides). Coefficients
    # are float64 scalars on our side and float32 tensors in diffusers. Observed 0.8-1.1 units.
    scheduler = diffusers.UniPCMultistepScheduler(**SD, solver_order=order, solver_type="bh2", timestep_spacing=spacing)
    ours, theirs = run_pair(
        scheduler, samplers.sample_unipc, vp=True, quantize=True, steps=12, order=order, variant="bh2"
    )
    assert_parity(ours, theirs)


def test_unipc_bh1_up_to_sigma_min():
    # With a final sigma of 0 diffusers' bh1 returns NaN (B(h) = h = inf times an empty sum), so stop it at
    # the last training sigma (final_sigmas_type="sigma_min") and compare our x at that sigma (our grid
    # then has one more step, to 0). lower_order_final=False on both sides keeps the orders aligned.
    # Observed 2.8 units.
    steps = 12
    scheduler = diffusers.UniPCMultistepScheduler(
        **SD, solver_order=2, solver_type="bh1", final_sigmas_type="sigma_min", lower_order_final=False
    )
    seen = {}
    ours, theirs = run_pair(
        scheduler,
        samplers.sample_unipc,
        vp=True,
        quantize=True,
        steps=steps,
        order=2,
        variant="bh1",
        lower_order_final=False,
        callback=lambda **kw: seen.setdefault(kw["i"], kw["x"]),
    )
    assert bool(torch.isfinite(ours).all())
    # diffusers' VP sample at sigma_min is x_VE / sqrt(1 + sigma_min^2).
    sigma_min = scheduler.sigmas[-1].item()
    assert_parity(seen[steps - 1] / math.sqrt(1 + sigma_min**2), theirs)


def test_unipc_bh1_final_sigma_zero_is_nan_in_diffusers_and_finite_here():
    # The discrepancy documented above: if diffusers fixes it, this test says so.
    scheduler = diffusers.UniPCMultistepScheduler(**SD, solver_order=2, solver_type="bh1")
    ours, theirs = run_pair(scheduler, samplers.sample_unipc, vp=True, quantize=True, steps=8, variant="bh1")
    assert bool(torch.isfinite(ours).all()) and bool(torch.isnan(theirs).any())


def test_diffusers_third_order_sde_is_not_dpmpp_3m_sde():
    # Why diffusers_compat.diffusers_scheduler refuses "DPM++ 3M SDE": with the same noise, diffusers' third-order
    # sde-dpmsolver++ and k-diffusion's sample_dpmpp_3m_sde (the reference of ours) end far apart, while
    # the second-order pair above agrees to float32 precision.
    k_sampling = kdiffusion.import_sampling()
    noises = draws(20, seed=6)
    scheduler = diffusers.DPMSolverMultistepScheduler(**SD, algorithm_type="sde-dpmsolver++", solver_order=3)

    def k_sampler(denoiser, x, sigmas, *, noise):
        return k_sampling.sample_dpmpp_3m_sde(denoiser, x, sigmas, noise_sampler=noise, disable=True)

    ours, theirs = run_pair(
        scheduler,
        k_sampler,
        vp=True,
        quantize=True,
        steps=20,
        noises=noises,
        step_kwargs=lambda k: {"variance_noise": noises[k]},
    )
    assert error_units(ours, theirs) > 1e4  # observed ~1e6 units: 0.5 on outputs of size ~3
