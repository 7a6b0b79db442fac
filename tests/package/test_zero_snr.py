"""Zero terminal SNR through the package's front door: sampling starts at sigma = inf (Lin et al. 2024).

Oracles, none of them the code under test:

* diffusers' DDIMScheduler and DDPMScheduler with ``rescale_betas_zero_snr=True`` and trailing or linspace
  spacing, driving an exact v-prediction network for Gaussian-mixture data (tests/support.py), from the
  same noise: the same algorithm in the variance-preserving view, where alpha_bar = 0 is an ordinary number;
* the limit itself: on exact Gaussian data a sampler started at sigma = inf from z agrees with the same
  sampler started at a huge finite sigma from sqrt(1 + sigma^2) z (the single-step samplers) and converges to
  the exact probability-flow solution from pure noise, mean + std z (every ODE sampler that steps from inf).
"""

from __future__ import annotations

import math

import diffusers
import pytest
import torch
from support import model_from_denoiser

from diffusion_internals import samplers, sampling, schedules
from diffusion_internals.denoisers import (
    DiscreteDenoiser,
    GaussianDenoiser,
    GaussianMixtureDenoiser,
    gaussian_ode_solution,
)
from diffusion_internals.diffusers_compat import diffusers_sigmas
from diffusion_internals.samplers.common import FROM_INFINITY

ULP = 2.0**-23  # float32's spacing at 1
UNITS = 8  # tolerance in ULP x max |x0|, as tests/package/test_diffusers_parity.py
SHAPE = (3, 2, 4, 4)  # (B, C, H, W)
MIXTURE = GaussianMixtureDenoiser(
    torch.randn((3,) + SHAPE[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    torch.tensor([0.4, 0.7, 0.5]),
    torch.tensor([0.3, 0.3, 0.4]),
)
ZSNR = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True}
GAUSS_MEAN, GAUSS_STD = 0.3, 0.8


def zero_snr_alphas_cumprod(num_steps: int = 1000) -> torch.Tensor:
    return schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas("linear", num_steps)))


def imperfect(model):
    """The exact network plus 0.1 tanh(x_in): a network whose output at alpha_bar = 0 depends on its input, as a
    trained one does (the exact v at alpha_bar = 0 is -E[x0] whatever x_in, which would hide a wrong input scaling)."""
    return lambda x_in, t, **cond: model(x_in, t, **cond) + 0.1 * torch.tanh(x_in)


def error_units(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return (ours - theirs).abs().max().item() / (ULP * theirs.abs().max().item())


def run_diffusers(scheduler, model, z: torch.Tensor, steps: int, step_kwargs=lambda k: {}) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    x = z * scheduler.init_noise_sigma
    for k, t in enumerate(scheduler.timesteps):
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, **step_kwargs(k)).prev_sample
    return x.double()


@pytest.mark.parametrize("steps", [1, 5, 20, 50])
def test_ddim_from_pure_noise_matches_diffusers(steps):
    # DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing") starts at t = 999, alpha_bar = 0,
    # sigma = inf, Lin et al.'s recipe. ("linspace" is not compared: diffusers' DDIM steps from t to t - T // S,
    # which is not the next timestep of a linspace grid.)
    scheduler = diffusers.DDIMScheduler(
        **ZSNR, prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True
    )
    scheduler.set_timesteps(steps)
    alphas_cumprod = scheduler.alphas_cumprod.double()
    assert alphas_cumprod[-1] == 0  # diffusers' DDIM keeps the exact 0
    model = imperfect(model_from_denoiser(MIXTURE, alphas_cumprod, prediction_type="v_prediction"))
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    theirs = run_diffusers(scheduler, model, z, steps)
    sigmas = diffusers_sigmas(scheduler)
    assert math.isinf(sigmas[0])
    denoiser = DiscreteDenoiser(model, alphas_cumprod, prediction_type="v_prediction", quantize=True)
    ours = samplers.sample_ddim(denoiser, z.double(), sigmas)  # x at sigma = inf is the pure noise z itself
    assert error_units(ours, theirs) <= UNITS, error_units(ours, theirs)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_eta_from_pure_noise_matches_diffusers_with_shared_noise(eta):
    # At eta = 1 the first step's eps coefficient sqrt(1 - abar' - std^2) is 0 exactly; diffusers computes it in float32
    # as sqrt(5.96e-8) = 2.44e-4 (measured at t = 999 -> 899, 10 steps), so it adds 2.44e-4 eps_hat that we don't: at
    # eta = 1 the allowance is that term, 2.5e-4 x max |x0| (observed 30 units); at eta = 0.5, 8 units.
    steps = 10
    noises = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(10 + k)) for k in range(steps)]
    scheduler = diffusers.DDIMScheduler(
        **ZSNR, prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True
    )
    scheduler.set_timesteps(steps)
    alphas_cumprod = scheduler.alphas_cumprod.double()
    model = model_from_denoiser(MIXTURE, alphas_cumprod, prediction_type="v_prediction")
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    theirs = run_diffusers(scheduler, model, z, steps, lambda k: {"eta": eta, "variance_noise": noises[k]})
    sigmas = diffusers_sigmas(scheduler)
    drawn = iter(noises)
    ours = samplers.sample_ddim(
        DiscreteDenoiser(model, alphas_cumprod, prediction_type="v_prediction", quantize=True),
        z.double(),
        sigmas,
        eta=eta,
        noise=lambda sigma, sigma_next: next(drawn).double(),
    )
    allowed = UNITS if eta < 1 else 2.5e-4 / ULP
    assert error_units(ours, theirs) <= allowed, error_units(ours, theirs)


def test_ddpm_from_pure_noise_matches_diffusers_with_reproduced_draws():
    # DDPMScheduler draws randn(shape, generator) at every step with t > 0; fixed_small variance (beta-tilde).
    steps = 10
    scheduler = diffusers.DDPMScheduler(
        **ZSNR, prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False
    )
    scheduler.set_timesteps(steps)
    alphas_cumprod = scheduler.alphas_cumprod.double()
    assert alphas_cumprod[-1] == 0
    model = model_from_denoiser(MIXTURE, alphas_cumprod, prediction_type="v_prediction")
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(3)
    theirs = run_diffusers(scheduler, model, z, steps, lambda k: {"generator": generator})
    replay = torch.Generator().manual_seed(3)
    draws = [torch.randn(SHAPE, generator=replay) for _ in range(steps)]
    drawn = iter(draws)
    ours = samplers.sample_ddpm(
        DiscreteDenoiser(model, alphas_cumprod, prediction_type="v_prediction", quantize=True),
        z.double(),
        diffusers_sigmas(scheduler),
        noise=lambda sigma, sigma_next: next(drawn).double(),
    )
    assert error_units(ours, theirs) <= UNITS, error_units(ours, theirs)


def test_sample_front_door_starts_from_unit_noise_on_a_zero_snr_schedule():
    # sample() draws z ~ N(0, I) (no sqrt(1 + inf^2) scale) and runs DDIM from sigma = inf: the diffusers loop above.
    alphas_cumprod = zero_snr_alphas_cumprod()
    model = model_from_denoiser(MIXTURE, alphas_cumprod, prediction_type="v_prediction")
    denoiser = DiscreteDenoiser(model, alphas_cumprod, prediction_type="v_prediction")
    ours = sampling.sample(
        denoiser, SHAPE, sampler="ddim", steps=8, schedule="trailing", dtype=torch.float64, generator=gen(5)
    )
    z = torch.randn(SHAPE, generator=gen(5), dtype=torch.float64)
    sigmas = sampling.sigmas_for(denoiser, 8, schedule="trailing")
    assert math.isinf(sigmas[0])
    torch.testing.assert_close(ours, samplers.sample_ddim(denoiser, z, sigmas), rtol=0, atol=0)
    with pytest.raises(ValueError, match="init_noise='ve'"):
        sampling.sample(denoiser, SHAPE, sampler="ddim", steps=8, schedule="trailing", init_noise="ve")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "sampler, options",
    [
        (samplers.sample_ddim, {}),
        (samplers.sample_ddim, {"eta": 0.5}),
        (samplers.sample_ddpm, {}),
        (samplers.sample_euler, {}),
        (samplers.sample_euler_ancestral, {"eta": 0.7}),
        (samplers.sample_dpmpp_2m_sde, {"eta": 1.0}),
    ],
)
def test_first_step_is_the_limit_of_a_huge_finite_sigma(sampler, options):
    # One step from sigma_0 to sigma_1: with x = sqrt(1 + sigma_0^2) z and the same fresh noise, the result tends to
    # the step from inf as sigma_0 grows, with an error ~ sigma_1^2 |z| / sigma_0.
    z = torch.randn(SHAPE, generator=gen(2), dtype=torch.float64)
    fresh = torch.randn(SHAPE, generator=gen(3), dtype=torch.float64)
    sigma_1 = 2.5

    def run(sigma_0: float) -> torch.Tensor:
        x = z if math.isinf(sigma_0) else z * math.sqrt(1 + sigma_0**2)
        sigmas = torch.tensor([sigma_0, sigma_1, 0.0], dtype=torch.float64)
        return sampler(MIXTURE, x, sigmas, noise=lambda s, s_next: fresh, **options)

    at_inf = run(math.inf)
    for sigma_0, tol in ((1e5, 1e-3), (1e7, 1e-5)):
        torch.testing.assert_close(run(sigma_0), at_inf, rtol=0, atol=tol)
    assert (run(1e2) - at_inf).abs().max() > 1e-4  # and the finite start is measurably different: the test can fail


@pytest.mark.parametrize("name", ["ddim", "euler", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_ode_samplers_from_pure_noise_converge_to_the_exact_solution(name):
    # Gaussian data: the probability-flow ODE from sigma = inf maps z to mean + sqrt(std^2 + sigma^2) z
    # (denoisers.gaussian_ode_solution). A trailing grid ends at the last training sigma s, from where every sampler
    # jumps to D(x, s); so the exact answer of the grid is D(ODE solution at s, s). Every ODE sampler that steps from
    # inf converges to it: the error falls at least 3x from 25 to 100 steps (first order or better).
    options = {"eta": 0.0} if name in ("dpmpp_2m_sde", "dpmpp_3m_sde") else {}
    alphas_cumprod = zero_snr_alphas_cumprod()
    data = GaussianDenoiser(GAUSS_MEAN, GAUSS_STD)
    model = model_from_denoiser(data, alphas_cumprod, prediction_type="v_prediction")
    denoiser = DiscreteDenoiser(model, alphas_cumprod, prediction_type="v_prediction")
    z = torch.randn(SHAPE, generator=gen(4), dtype=torch.float64)
    torch.testing.assert_close(
        gaussian_ode_solution(z, math.inf, 0.0, GAUSS_MEAN, GAUSS_STD), GAUSS_MEAN + GAUSS_STD * z
    )
    errors = []
    for steps in (25, 100):
        sigmas = sampling.sigmas_for(denoiser, steps, schedule="trailing")
        s_last = float(sigmas[-2])
        exact = data(gaussian_ode_solution(z, math.inf, s_last, GAUSS_MEAN, GAUSS_STD), s_last)
        x = sampling.SAMPLERS[name](denoiser, z, sigmas, **options)
        errors.append((x - exact).abs().max().item())
    assert errors[1] < 0.05 and errors[0] / errors[1] > 3, (
        errors
    )  # observed: Euler 0.153 -> 0.045, 3M SDE 0.0049 -> 0.00088


@pytest.mark.parametrize("name", ["heun", "dpm2", "lms", "unipc", "dpmpp_2s_ancestral"])
def test_samplers_without_a_limit_refuse_by_name(name):
    alphas_cumprod = zero_snr_alphas_cumprod()
    denoiser = DiscreteDenoiser(
        model_from_denoiser(MIXTURE, alphas_cumprod, prediction_type="v_prediction"),
        alphas_cumprod,
        prediction_type="v_prediction",
    )
    with pytest.raises(ValueError, match=rf"sample_{name} cannot start at sigma = inf.*sample_euler"):
        sampling.sample(denoiser, SHAPE, sampler=name, steps=5, schedule="trailing")


def test_refusals_name_the_cause():
    alphas_cumprod = zero_snr_alphas_cumprod()
    eps_model = DiscreteDenoiser(model_from_denoiser(MIXTURE, alphas_cumprod), alphas_cumprod)
    with pytest.raises(ValueError, match="epsilon-prediction network has no x0 estimate at sigma = inf"):
        sampling.sample(eps_model, SHAPE, sampler="ddim", steps=5, schedule="trailing")
    sigmas = torch.tensor([math.inf, 1.0, 0.0], dtype=torch.float64)
    z = torch.randn(SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match="s_tmax"):
        samplers.sample_euler(MIXTURE, z, sigmas, s_churn=1.0)
    samplers.sample_euler(MIXTURE, z, sigmas, s_churn=1.0, s_tmax=10.0)  # churn below inf is fine
    with pytest.raises(ValueError, match="only sigmas\\[0\\] may be inf"):
        samplers.sample_euler(MIXTURE, z, torch.tensor([5.0, math.inf, 0.0], dtype=torch.float64))
    assert sorted(FROM_INFINITY) == sorted(
        f"sample_{n}" for n in ("ddim", "ddpm", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde")
    )


def test_exact_denoisers_at_infinity_return_the_prior_mean():
    z = torch.randn(SHAPE, generator=gen(6), dtype=torch.float64)
    torch.testing.assert_close(
        GaussianDenoiser(GAUSS_MEAN, GAUSS_STD)(z, math.inf), torch.full(SHAPE, GAUSS_MEAN, dtype=torch.float64)
    )
    prior_mean = (MIXTURE.weights.reshape(-1, 1, 1, 1) * MIXTURE.means).sum(0)  # sum_k w_k m_k
    torch.testing.assert_close(MIXTURE(z, math.inf), prior_mean.expand(SHAPE))
    # A batch may mix pure noise with finite levels: each row follows its own level.
    mixed = MIXTURE(z, torch.tensor([math.inf, 1.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(mixed[0], prior_mean)
    torch.testing.assert_close(mixed[1:], MIXTURE(z[1:], torch.tensor([1.0, 0.5], dtype=torch.float64)))
    labels = torch.tensor([2, 0, -1])
    torch.testing.assert_close(MIXTURE(z, math.inf, class_labels=labels)[0], MIXTURE.means[2])
