"""The front door (sampling.sample), its sigma grids, the UI-name registry and the diffusers mapping.

Oracles: diffusers' schedulers for the grids (their timesteps and Karras sigmas), k-diffusion's
get_sigmas_exponential, the exact probability-flow ODE map of Gaussian data for a whole run.
"""

from __future__ import annotations

import math

import diffusers
import pytest
import torch
from support import eps_model_from_denoiser

from diffusion_internals import diffusers_compat, samplers, sampling
from diffusion_internals.course import kdiffusion
from diffusion_internals.denoisers import (
    DiscreteDenoiser,
    GaussianDenoiser,
    GaussianMixtureDenoiser,
    gaussian_ode_solution,
)
from diffusion_internals.schedules import alphas_cumprod, make_betas

K = kdiffusion.import_sampling()
AC = alphas_cumprod(make_betas("scaled_linear", 1000))  # Stable Diffusion's schedule, float64
MIXTURE = GaussianMixtureDenoiser(
    torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.3, 0.6]), torch.tensor([0.4, 0.6])
)
DISCRETE = DiscreteDenoiser(eps_model_from_denoiser(MIXTURE, AC), AC)
SD_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Recording:
    """Wraps a denoiser and keeps the x and sigma of every call (the first x is the initial noise)."""

    def __init__(self, denoiser):
        self.denoiser, self.xs, self.sigmas = denoiser, [], []

    def __call__(self, x, sigma, **cond):
        self.xs.append(x.clone())
        self.sigmas.append(sigma.clone())
        return self.denoiser(x, sigma, **cond)

    def __getattr__(self, name):  # alphas_cumprod, sigma_min, sigma_max of the wrapped denoiser
        return getattr(self.denoiser, name)


# ----------------------------------------------------------------------------- sigma grids


def test_samplers_table_holds_the_twelve_plain_denoiser_samplers():
    # CFG++ samplers (samplers.sample_*_cfgpp) need a CFGDenoiser, so the front door leaves them out.
    names = [
        "ddpm",
        "ddim",
        "euler",
        "euler_ancestral",
        "heun",
        "dpm2",
        "lms",
        "dpmpp_2m",
        "dpmpp_2s_ancestral",
        "dpmpp_2m_sde",
        "dpmpp_3m_sde",
        "unipc",
    ]
    assert list(sampling.SAMPLERS) == names
    assert all(fn is getattr(samplers, f"sample_{name}") for name, fn in sampling.SAMPLERS.items())


@pytest.mark.parametrize("steps", [2, 7, 25])  # with 1 step diffusers' Karras grid collapses to sigma_min
def test_karras_grid_is_diffusers_karras_grid(steps):
    scheduler = diffusers.EulerDiscreteScheduler.from_config(SD_CONFIG, use_karras_sigmas=True)
    scheduler.set_timesteps(steps)
    ours = sampling.sigmas_for(DISCRETE, steps, schedule="karras")
    assert ours.dtype == torch.float64 and ours[-1] == 0
    # diffusers' alphas_cumprod is float32: at sigma_min ~ 0.029, 1 - abar ~ 8.5e-4 carries a float32
    # error of ~6e-8, i.e. ~4e-5 relative in sigma_min, which the Karras ramp carries to every sigma.
    torch.testing.assert_close(ours.float(), scheduler.sigmas, rtol=1e-4, atol=0)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_discrete_grids_are_the_training_sigmas_at_diffusers_timesteps(spacing):
    scheduler = diffusers.DDIMScheduler.from_config(SD_CONFIG, timestep_spacing=spacing)
    scheduler.set_timesteps(10)
    expected = ((1 - AC) / AC).sqrt()[scheduler.timesteps]
    ours = sampling.sigmas_for(DISCRETE, 10, schedule=spacing)
    torch.testing.assert_close(ours, torch.cat([expected, expected.new_zeros(1)]), rtol=1e-12, atol=0)


def test_exponential_grid_matches_k_diffusion_and_takes_explicit_endpoints():
    gaussian = GaussianDenoiser(0.0, 1.0)
    ours = sampling.sigmas_for(gaussian, 9, schedule="exponential", sigma_min=0.002, sigma_max=80.0)
    torch.testing.assert_close(ours, K.get_sigmas_exponential(9, 0.002, 80.0, device="cpu").double(), rtol=1e-6, atol=0)
    # Explicit endpoints override the denoiser's training range.
    ours = sampling.sigmas_for(DISCRETE, 5, schedule="karras", sigma_min=0.1, sigma_max=10.0, rho=3.0)
    torch.testing.assert_close(
        ours, K.get_sigmas_karras(5, 0.1, 10.0, rho=3.0, device="cpu").double(), rtol=1e-6, atol=0
    )


def test_diffusers_sigmas_reads_any_scheduler_grid():
    euler = diffusers.EulerDiscreteScheduler.from_config(SD_CONFIG, timestep_spacing="trailing")
    heun = diffusers.HeunDiscreteScheduler.from_config(SD_CONFIG, timestep_spacing="trailing")
    ddim = diffusers.DDIMScheduler.from_config(SD_CONFIG, timestep_spacing="trailing")
    for scheduler in (euler, heun, ddim):
        scheduler.set_timesteps(6)
    expected = sampling.sigmas_for(DISCRETE, 6, schedule="trailing")  # training sigmas at 999, 832, ...
    for scheduler in (euler, heun, ddim):  # Heun's repeated sigmas collapse; DDIM's come from its timesteps
        ours = diffusers_compat.diffusers_sigmas(scheduler)
        assert ours.dtype == torch.float64 and ours.shape == (7,) and ours[-1] == 0
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=0)  # diffusers: float32 alphas_cumprod
    unipc = diffusers.UniPCMultistepScheduler.from_config(SD_CONFIG, final_sigmas_type="sigma_min")
    unipc.set_timesteps(6)
    assert diffusers_compat.diffusers_sigmas(unipc).shape == (8,)  # sigma_min, then one more step to 0
    with pytest.raises(ValueError, match="after set_timesteps"):
        diffusers_compat.diffusers_sigmas(diffusers.EulerDiscreteScheduler())


def test_grid_errors_name_the_parameter():
    gaussian = GaussianDenoiser(0.0, 1.0)
    with pytest.raises(ValueError, match="sigma_min and sigma_max"):
        sampling.sigmas_for(gaussian, 5, schedule="karras")
    with pytest.raises(ValueError, match="alphas_cumprod"):
        sampling.sigmas_for(gaussian, 5, schedule="leading")
    with pytest.raises(ValueError, match="only used by the continuous schedules"):
        sampling.sigmas_for(DISCRETE, 5, schedule="trailing", sigma_max=3.0)
    with pytest.raises(ValueError, match="rho is only used"):
        sampling.sigmas_for(DISCRETE, 5, schedule="exponential", rho=5.0)


# ----------------------------------------------------------------------------- sample()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 0}, ValueError, "steps must be an int >= 1, got 0"),
        ({"steps": 2.5}, TypeError, "steps must be an int >= 1"),
        ({"steps": True}, TypeError, "steps must be an int >= 1"),
        ({"sampler": "dpm++"}, ValueError, r"sampler must be one of \['ddpm', 'ddim'.*'unipc'\], got 'dpm\+\+'"),
        (
            {"schedule": "cosine"},
            ValueError,
            r"schedule must be one of \['karras', 'exponential', 'leading'.*got 'cosine'",
        ),
        ({"init_noise": "edm"}, ValueError, r"init_noise must be None \(automatic\) or one of \['vp', 've'\]"),
        ({"sampler": "euler", "eta": 1.0}, TypeError, r"sample_euler got unknown options \['eta'\]"),
        # Each of these failed inside torch or python ('int' object is not iterable, normal_kernel_cpu, float('a')).
        (
            {"generator": 42},
            TypeError,
            r"^generator must be None, one torch.Generator or a list of one per sample \(B = 2\), got int",
        ),
        ({"dtype": torch.int64}, ValueError, r"^dtype must be a floating-point torch.dtype .*, got torch.int64"),
        ({"dtype": "float32"}, ValueError, r"^dtype must be a floating-point torch.dtype .*, got 'float32'"),
        ({"sigma_min": "0.1"}, ValueError, r"^sigma_min must be a finite real number .*, got '0.1'"),
    ],
)
def test_sample_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        sampling.sample(DISCRETE, (2, 2), **kwargs)


@pytest.mark.parametrize("shape", [(), (0, 2), (2.0, 2), "22", 4])
def test_sample_rejects_bad_shape(shape):
    with pytest.raises(ValueError, match="shape must be a non-empty sequence of ints >= 1"):
        sampling.sample(DISCRETE, shape)


@pytest.mark.parametrize(
    "denoiser, init_noise, expected_scale",
    [
        (DISCRETE, None, "vp"),  # discrete models start as diffusers: randn * sqrt(1 + sigma_0^2)
        (DISCRETE, "ve", "ve"),
        (GaussianDenoiser(0.0, 1.0), None, "ve"),  # continuous denoisers as k-diffusion: randn * sigma_0
        (GaussianDenoiser(0.0, 1.0), "vp", "vp"),
    ],
)
def test_initial_noise_scale(denoiser, init_noise, expected_scale):
    recording = Recording(denoiser)
    sampling.sample(
        recording,
        (3, 2),
        sampler="euler",
        steps=2,
        generator=gen(5),
        init_noise=init_noise,
        sigma_min=None if denoiser is DISCRETE else 0.01,
        sigma_max=None if denoiser is DISCRETE else 20.0,
    )
    sigma_0 = recording.sigmas[0][0].item()
    scale = math.sqrt(1 + sigma_0**2) if expected_scale == "vp" else sigma_0
    torch.testing.assert_close(recording.xs[0], torch.randn(3, 2, generator=gen(5)) * scale)


def test_sample_is_reproducible_and_per_sample_generators_are_batch_independent():
    kwargs = dict(sampler="euler_ancestral", steps=4)
    one = sampling.sample(DISCRETE, (3, 2), generator=gen(0), **kwargs)
    torch.testing.assert_close(one, sampling.sample(DISCRETE, (3, 2), generator=gen(0), **kwargs), rtol=0, atol=0)
    seeds = [11, 12, 13]
    big = sampling.sample(DISCRETE, (3, 2), generator=[gen(s) for s in seeds], **kwargs)
    small = sampling.sample(DISCRETE, (2, 2), generator=[gen(s) for s in seeds[:2]], **kwargs)
    torch.testing.assert_close(big[:2], small, rtol=0, atol=1e-6)


def test_sample_dtype_and_sampler_options_reach_the_sampler():
    out = sampling.sample(DISCRETE, (2, 2), sampler="ddim", steps=3, dtype=torch.float64, generator=gen(0), eta=1.0)
    assert out.dtype == torch.float64 and out.shape == (2, 2)
    with pytest.raises(ValueError, match="eta must .*>= 0, got -1.0"):
        sampling.sample(DISCRETE, (2, 2), sampler="ddim", steps=3, eta=-1.0)


@pytest.mark.parametrize("sampler, order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2), ("unipc", 3)])
def test_a_whole_run_converges_to_the_exact_ode_of_gaussian_data(sampler, order):
    # Data N(0.5, 0.7^2): the probability-flow ODE maps x at sigma_0 to 0.5 + (x - 0.5) 0.7 / sqrt(0.7^2 + sigma_0^2).
    # The error of the front door's whole run (grid, initial noise, sampler) must shrink like steps^-order.
    errors = []
    for steps in (20, 40):
        recording = Recording(GaussianDenoiser(0.5, 0.7))
        out = sampling.sample(
            recording,
            (4, 3),
            sampler=sampler,
            steps=steps,
            sigma_min=0.002,
            sigma_max=80.0,
            generator=gen(3),
            dtype=torch.float64,
        )
        exact = gaussian_ode_solution(recording.xs[0], 80.0, 0.0, 0.5, 0.7)
        errors.append((out - exact).abs().max().item())
    observed = math.log2(errors[0] / errors[1])
    assert order - 0.35 < observed < order + 0.6, (errors, observed)


# ----------------------------------------------------------------------------- the UI-name registry


def test_registry_names_resolve_to_known_samplers_and_schedules():
    for name in sampling.NAMED_SAMPLERS:
        recipe = sampling.resolve(name)
        assert recipe.sampler in sampling.SAMPLERS and recipe.schedule in sampling.SCHEDULES
        assert (recipe.schedule == "karras") == name.endswith("Karras"), name
    assert sampling.resolve("DPM++ 2M Karras") == ("dpmpp_2m", "karras", {})
    assert sampling.resolve("Euler a").sampler == "euler_ancestral"
    required = {
        "Euler",
        "Euler a",
        "Heun",
        "DPM2",
        "LMS",
        "LMS Karras",
        "DPM++ 2M",
        "DPM++ 2M Karras",
        "DPM++ 2M SDE",
        "DPM++ 2M SDE Karras",
        "DPM++ 2S a",
        "DPM++ 2S a Karras",
        "DPM++ 3M SDE",
        "DPM++ 3M SDE Karras",
        "DDIM",
        "DDPM",
        "UniPC",
    }
    assert required <= set(sampling.NAMED_SAMPLERS)


def test_resolve_rejects_unknown_names_and_returns_a_copy():
    with pytest.raises(ValueError, match=r"name must be one of \['Euler', 'Euler a'.*got 'Euler A'"):
        sampling.resolve("Euler A")
    sampling.resolve("DDIM").options["eta"] = 1.0
    assert sampling.resolve("DDIM").options == {"eta": 0.0}


@pytest.mark.parametrize("name", list(sampling.NAMED_SAMPLERS))
def test_every_name_runs_on_a_gaussian_mixture_model(name):
    calls = Recording(DISCRETE)
    out = sampling.sample_by_name(calls, (3, 2), name, steps=4, generator=gen(1))
    assert out.shape == (3, 2) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    recipe = sampling.resolve(name)
    grid = sampling.sigmas_for(DISCRETE, 4, schedule=recipe.schedule)
    torch.testing.assert_close(calls.sigmas[0][0].double(), grid[0], rtol=1e-6, atol=0)  # it ran on its grid


def test_sample_by_name_passes_options_and_refuses_to_override_the_name():
    a = sampling.sample_by_name(DISCRETE, (2, 2), "DDIM", steps=3, generator=gen(0), eta=1.0)
    b = sampling.sample(DISCRETE, (2, 2), sampler="ddim", schedule="leading", steps=3, generator=gen(0), eta=1.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="schedule is set by the name 'DPM\\+\\+ 2M Karras'"):
        sampling.sample_by_name(DISCRETE, (2, 2), "DPM++ 2M Karras", schedule="exponential")


# ----------------------------------------------------------------------------- diffusers equivalents


@pytest.mark.parametrize(
    "name, cls, attrs",
    [
        ("Euler", diffusers.EulerDiscreteScheduler, {"use_karras_sigmas": False}),
        ("Euler a", diffusers.EulerAncestralDiscreteScheduler, {}),
        ("Heun", diffusers.HeunDiscreteScheduler, {"use_karras_sigmas": False}),
        ("DPM2", diffusers.KDPM2DiscreteScheduler, {"use_karras_sigmas": False}),
        ("LMS", diffusers.LMSDiscreteScheduler, {"use_karras_sigmas": False}),
        ("LMS Karras", diffusers.LMSDiscreteScheduler, {"use_karras_sigmas": True}),
        (
            "DPM++ 2M",
            diffusers.DPMSolverMultistepScheduler,
            {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False},
        ),
        (
            "DPM++ 2M Karras",
            diffusers.DPMSolverMultistepScheduler,
            {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
        ),
        (
            "DPM++ 2M SDE",
            diffusers.DPMSolverMultistepScheduler,
            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False},
        ),
        (
            "DPM++ 2M SDE Karras",
            diffusers.DPMSolverMultistepScheduler,
            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        ),
        ("DDIM", diffusers.DDIMScheduler, {}),
        ("DDPM", diffusers.DDPMScheduler, {}),
        ("UniPC", diffusers.UniPCMultistepScheduler, {"solver_type": "bh2", "predict_x0": True}),
    ],
)
def test_diffusers_scheduler_follows_the_overview_table(name, cls, attrs):
    # Start from a Karras DPM-Solver config: the Karras switch must not leak into a plain name.
    source = diffusers.DPMSolverMultistepScheduler.from_config(SD_CONFIG, use_karras_sigmas=True, solver_order=3)
    for config in (source, dict(source.config)):
        scheduler = diffusers_compat.diffusers_scheduler(name, config)
        assert type(scheduler) is cls
        assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.beta_end == 0.012
        for key, value in attrs.items():
            assert scheduler.config[key] == value, key
        assert scheduler.config.get("solver_order", 2) == 2  # only multistep solvers keep one, set to 2
        assert "algorithm_type" not in scheduler.config or cls is diffusers.DPMSolverMultistepScheduler


@pytest.mark.parametrize(
    "name",
    sorted(
        set(sampling.NAMED_SAMPLERS)
        - {
            "Euler",
            "Euler a",
            "Heun",
            "DPM2",
            "LMS",
            "LMS Karras",
            "DPM++ 2M",
            "DPM++ 2M Karras",
            "DPM++ 2M SDE",
            "DPM++ 2M SDE Karras",
            "DDIM",
            "DDPM",
            "UniPC",
        }
    ),
)
def test_diffusers_scheduler_says_when_there_is_no_equivalent(name):
    with pytest.raises(ValueError, match=f"diffusers has no scheduler equivalent to '{name.replace('+', '[+]')}'"):
        diffusers_compat.diffusers_scheduler(name, SD_CONFIG)


def test_diffusers_scheduler_rejects_unknown_names_and_configs():
    with pytest.raises(ValueError, match="name must be one of"):
        diffusers_compat.diffusers_scheduler("DPM fast", SD_CONFIG)
    with pytest.raises(ValueError, match="config must be a diffusers scheduler or its config"):
        diffusers_compat.diffusers_scheduler("Euler", "scaled_linear")
