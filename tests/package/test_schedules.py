"""Schedules against independent oracles: diffusers, k-diffusion, closed forms and Lin et al. 2024 Table 2."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_internals.course import kdiffusion
from diffusion_internals.schedules import (
    alphas_cumprod,
    alphas_cumprod_from_sigmas,
    inference_timesteps,
    log_snr,
    make_betas,
    rescale_zero_terminal_snr,
    sigmas_exponential,
    sigmas_from_alphas_cumprod,
    sigmas_from_timesteps,
    sigmas_karras,
    sigmas_polyexponential,
    snr,
)

FAST = settings(max_examples=25, deadline=None)
KINDS = ["linear", "scaled_linear", "cosine", "sqrt", "sigmoid"]
# Our kind -> diffusers' DDPMScheduler(beta_schedule=...).
DIFFUSERS_NAMES = {
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}
F32 = dict(rtol=2e-5, atol=1e-7)  # float32 oracles: a few ulps, accumulated over a 1000-step cumprod


# ----------------------------------------------------------------------------- betas vs diffusers


@pytest.mark.parametrize("kind", list(DIFFUSERS_NAMES))
@pytest.mark.parametrize("num_steps", [1000, 37, 2])
def test_alphas_cumprod_matches_diffusers(kind: str, num_steps: int) -> None:
    ours = alphas_cumprod(make_betas(kind, num_steps))
    # DDPMScheduler's own defaults are beta_start=1e-4, beta_end=0.02, those of Ho et al. 2020;
    # scaled_linear needs Stable Diffusion's endpoints passed explicitly.
    endpoints = dict(beta_start=0.00085, beta_end=0.012) if kind == "scaled_linear" else {}
    oracle = DDPMScheduler(num_train_timesteps=num_steps, beta_schedule=DIFFUSERS_NAMES[kind], **endpoints)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, oracle.alphas_cumprod.double(), **F32)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "sigmoid"])
def test_beta_endpoints_are_passed_through(kind: str) -> None:
    ours = make_betas(kind, 500, beta_start=3e-4, beta_end=0.03)
    oracle = DDPMScheduler(num_train_timesteps=500, beta_schedule=DIFFUSERS_NAMES[kind], beta_start=3e-4, beta_end=0.03)
    torch.testing.assert_close(ours, oracle.betas.double(), **F32)


# ----------------------------------------------------------------------------- betas vs closed forms


def test_cosine_matches_eq_17_until_the_cap() -> None:
    num_steps, s = 1000, 0.008
    f = [math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2 for t in range(num_steps + 1)]
    betas = make_betas("cosine", num_steps)
    uncapped = betas < 0.999
    assert not bool(uncapped[-1]) and betas[-1].item() == 0.999  # the last step is clipped (Sec. 3.2)
    expected = torch.tensor([f[t + 1] / f[0] for t in range(num_steps)], dtype=torch.float64)
    first_cap = int(torch.nonzero(~uncapped)[0])
    torch.testing.assert_close(alphas_cumprod(betas)[:first_cap], expected[:first_cap], rtol=1e-12, atol=0)


@FAST
@given(num_steps=st.integers(2, 2000), s_fraction=st.floats(0.0, 0.9))
def test_sqrt_schedule_matches_its_closed_form(num_steps: int, s_fraction: float) -> None:
    # Li et al. 2022: alpha_bar(t) = 1 - sqrt(t/T + s); betas are ratios of consecutive values, so
    # alphas_cumprod[t] = alpha_bar((t+1)/T) / alpha_bar(0) until the cap max_beta = 0.999 takes over.
    s = s_fraction / num_steps  # alpha_bar must stay positive before the last step: s < 1/T
    betas = make_betas("sqrt", num_steps, s=s)
    alpha_bar = [1 - math.sqrt(t / num_steps + s) for t in range(num_steps + 1)]
    assert alpha_bar[-1] <= 0 and betas[-1].item() == 0.999  # alpha_bar(1) = 1 - sqrt(1 + s) <= 0: capped
    uncapped = int(torch.nonzero(betas == 0.999)[0])
    assert uncapped >= num_steps - 2
    expected = torch.tensor([alpha_bar[t + 1] / alpha_bar[0] for t in range(uncapped)], dtype=torch.float64)
    torch.testing.assert_close(alphas_cumprod(betas)[:uncapped], expected, rtol=1e-9, atol=1e-15)


def test_sqrt_schedule_rejects_an_s_that_ends_the_schedule_early() -> None:
    with pytest.raises(ValueError, match=r"^s=0.0078125 makes alpha_bar\(t/T\) <= 0 already at t=128"):
        make_betas("sqrt", 129, s=0.0078125)


def test_max_beta_is_the_named_cap() -> None:
    betas = make_betas("sqrt", 100, max_beta=0.5)
    assert betas.max().item() == 0.5 and betas[-1].item() == 0.5


@FAST
@given(kind=st.sampled_from(KINDS), num_steps=st.integers(2, 2000))
def test_alphas_cumprod_is_strictly_decreasing_in_0_1(kind: str, num_steps: int) -> None:
    a = alphas_cumprod(make_betas(kind, num_steps))
    assert a.shape == (num_steps,)
    assert bool((a > 0).all()) and bool((a <= 1).all())
    assert bool((a[1:] < a[:-1]).all())


# ----------------------------------------------------------------------------- SNR and sigma views


@FAST
@given(a=st.lists(st.floats(1e-6, 1 - 1e-6), min_size=1, max_size=20))
def test_snr_log_snr_and_sigma_agree(a: list[float]) -> None:
    a64 = torch.tensor(a, dtype=torch.float64)
    expected_snr = torch.tensor([v / (1 - v) for v in a], dtype=torch.float64)
    torch.testing.assert_close(snr(a64), expected_snr, rtol=1e-12, atol=0)
    torch.testing.assert_close(log_snr(a64), torch.log(expected_snr), rtol=1e-9, atol=1e-12)
    sigma = sigmas_from_alphas_cumprod(a64)
    torch.testing.assert_close(sigma**2, 1 / expected_snr, rtol=1e-9, atol=0)
    torch.testing.assert_close(alphas_cumprod_from_sigmas(sigma), a64, rtol=1e-12, atol=1e-15)


def test_sigma_endpoints_are_not_clamped() -> None:
    assert sigmas_from_alphas_cumprod(torch.tensor([1.0, 0.0])).tolist() == [0.0, math.inf]
    assert snr(torch.tensor([0.0])).item() == 0.0
    assert alphas_cumprod_from_sigmas(torch.tensor([math.inf])).item() == 0.0


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside diffusers' Euler
def test_sigmas_match_diffusers_euler_training_grid() -> None:
    oracle = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    ours = sigmas_from_alphas_cumprod(alphas_cumprod(make_betas("scaled_linear"))).flip(0)  # high -> low
    torch.testing.assert_close(ours, oracle.sigmas[:-1].double(), **F32)


# ----------------------------------------------------------------------------- zero terminal SNR


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine"])
def test_rescale_zero_terminal_snr_matches_diffusers(kind: str) -> None:
    endpoints = dict(beta_start=0.00085, beta_end=0.012) if kind == "scaled_linear" else {}
    oracle = DDPMScheduler(beta_schedule=DIFFUSERS_NAMES[kind], rescale_betas_zero_snr=True, **endpoints)
    ours = alphas_cumprod(rescale_zero_terminal_snr(make_betas(kind)))
    torch.testing.assert_close(ours, oracle.alphas_cumprod.double(), **F32)


@FAST
@given(kind=st.sampled_from(KINDS), num_steps=st.integers(2, 2000))
def test_rescale_zero_terminal_snr_properties(kind: str, num_steps: int) -> None:
    betas = make_betas(kind, num_steps)
    before, after = alphas_cumprod(betas), alphas_cumprod(rescale_zero_terminal_snr(betas))
    assert snr(after)[-1].item() == 0.0  # Lin et al. 2024: SNR(T) = 0 exactly
    assert math.isclose(after[0].item(), before[0].item(), rel_tol=1e-12)  # first alpha_bar kept
    assert bool((after[1:] < after[:-1]).all())


# ----------------------------------------------------------------------------- inference timesteps


def _diffusers_timesteps(num_train_steps: int, num_steps: int, spacing: str, steps_offset: int) -> torch.Tensor:
    scheduler = DDIMScheduler(num_train_timesteps=num_train_steps, timestep_spacing=spacing, steps_offset=steps_offset)
    scheduler.set_timesteps(num_steps)
    return scheduler.timesteps


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_train_steps", [1000, 37])
def test_inference_timesteps_match_diffusers_for_every_num_steps(spacing: str, num_train_steps: int) -> None:
    scheduler = DDIMScheduler(num_train_timesteps=num_train_steps, timestep_spacing=spacing)
    for num_steps in range(1, num_train_steps + 1):
        scheduler.set_timesteps(num_steps)
        oracle, ours = scheduler.timesteps, inference_timesteps(num_train_steps, num_steps, spacing)
        assert ours.dtype == torch.int64 and ours.shape == (num_steps,)
        if len(oracle) == num_steps + 1:
            # diffusers' float np.arange overshoots for some S (e.g. T=1000, S=61) and appends -1.
            assert spacing == "trailing" and oracle[-1].item() == -1
            oracle = oracle[:-1]
        assert torch.equal(ours, oracle), (num_steps, ours, oracle)


@pytest.mark.parametrize(
    ("num_steps", "steps_offset"), [(1, 0), (1, 1), (10, 1), (37, 1), (37, 3), (50, 1), (999, 1), (500, 1), (333, 2)]
)
def test_leading_steps_offset_matches_diffusers(num_steps: int, steps_offset: int) -> None:
    ours = inference_timesteps(1000, num_steps, "leading", steps_offset=steps_offset)
    assert torch.equal(ours, _diffusers_timesteps(1000, num_steps, "leading", steps_offset))


def test_trailing_overshoot_case_is_cut_to_num_steps() -> None:
    oracle = _diffusers_timesteps(1000, 61, "trailing", 0)
    ours = inference_timesteps(1000, 61, "trailing")
    assert len(ours) == 61 and ours.min().item() >= 0
    assert torch.equal(ours, oracle[:61])


def test_inference_timesteps_match_lin_et_al_table_2() -> None:
    # Table 2 (T = 1000, S = 10) lists 1-based timesteps; ours are 0-based and descending.
    table = {
        "linspace": [1, 112, 223, 334, 445, 556, 667, 778, 889, 1000],
        "leading": [1, 101, 201, 301, 401, 501, 601, 701, 801, 901],
        "trailing": [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000],
    }
    for spacing, one_based in table.items():
        expected = torch.tensor(one_based[::-1]) - 1
        assert torch.equal(inference_timesteps(1000, 10, spacing), expected), spacing


# ----------------------------------------------------------------------------- sigma grids


@FAST
@given(n=st.integers(1, 200), sigma_min=st.floats(1e-3, 1.0), ratio=st.floats(1.01, 1e4), rho=st.floats(1.0, 10.0))
def test_sigma_grids_match_k_diffusion(n: int, sigma_min: float, ratio: float, rho: float) -> None:
    K = kdiffusion.import_sampling()
    sigma_max = sigma_min * ratio
    # k-diffusion works in float32. Karras' ramp subtracts numbers of size sigma_max^(1/rho) to reach
    # sigma_min^(1/rho); raising to rho turns that cancellation into a relative error of about
    # rho * eps32 * ratio^(1/rho) at the small end. The log-space grids lose only |log sigma| * eps32.
    karras_rtol = 2e-5 + 8 * rho * 2**-24 * ratio ** (1 / rho)
    pairs = [
        (
            sigmas_karras(n, sigma_min, sigma_max, rho=rho),
            K.get_sigmas_karras(n, sigma_min, sigma_max, rho=rho),
            karras_rtol,
        ),
        (sigmas_exponential(n, sigma_min, sigma_max), K.get_sigmas_exponential(n, sigma_min, sigma_max), 2e-5),
        (
            sigmas_polyexponential(n, sigma_min, sigma_max, rho=rho),
            K.get_sigmas_polyexponential(n, sigma_min, sigma_max, rho=rho),
            2e-5,
        ),
    ]
    for ours, oracle, rtol in pairs:
        assert ours.dtype == torch.float64 and ours.shape == (n + 1,)
        assert ours[-1].item() == 0.0 and math.isclose(ours[0].item(), sigma_max, rel_tol=1e-12)
        assert n == 1 or math.isclose(ours[-2].item(), sigma_min, rel_tol=1e-12)
        assert bool((ours[1:] <= ours[:-1]).all())  # decreasing (ties only where float64 runs out of digits)
        torch.testing.assert_close(ours, oracle.double(), rtol=rtol, atol=0)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside diffusers' Euler
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize(("num_steps", "steps_offset"), [(1, 0), (10, 1), (37, 0), (50, 1), (999, 0)])
def test_sigmas_from_timesteps_match_diffusers_euler(spacing: str, num_steps: int, steps_offset: int) -> None:
    if spacing != "leading":
        steps_offset = 0
    oracle = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        timestep_spacing=spacing,
        steps_offset=steps_offset,
    )
    timesteps = inference_timesteps(1000, num_steps, spacing, steps_offset=steps_offset)
    if spacing == "linspace":
        # Euler's own "linspace" keeps fractional timesteps (no rounding, unlike DDIM), so we hand it our grid.
        oracle.set_timesteps(timesteps=timesteps.tolist())
    else:
        oracle.set_timesteps(num_steps)
    ours = sigmas_from_timesteps(timesteps, alphas_cumprod(make_betas("scaled_linear")))
    assert ours[-1].item() == 0.0 and ours.shape == (num_steps + 1,)
    torch.testing.assert_close(ours, oracle.sigmas.double(), **F32)


# ----------------------------------------------------------------------------- bad input

GOOD_BETAS = make_betas("linear", 10)
BAD_INPUT = [
    (lambda: make_betas("quadratic"), ValueError, r"kind must be one of \['cosine', 'linear'"),
    (lambda: make_betas("linear", 0), ValueError, r"^num_steps must be an int >= 1, got 0"),
    (lambda: make_betas("linear", 2.5), TypeError, r"^num_steps must be an int"),
    (
        lambda: make_betas("cosine", beta_start=1e-4),
        ValueError,
        r"does not use option beta_start=.*options are s, max_beta",
    ),
    (lambda: make_betas("linear", s=0.1), ValueError, r"does not use option s="),
    (lambda: make_betas("linear", beta_start=0.0), ValueError, r"^beta_start must satisfy 0 < beta_start < 1, got 0"),
    (
        lambda: make_betas("linear", beta_start=0.03),
        ValueError,
        r"^beta_end must satisfy beta_start \(0.03\) <= beta_end",
    ),
    (lambda: make_betas("scaled_linear", beta_end=1.0), ValueError, r"^beta_end must"),
    (lambda: make_betas("sigmoid", beta_end=float("nan")), ValueError, r"^beta_end must be a finite real"),
    (lambda: make_betas("cosine", s=-0.1), ValueError, r"^s must satisfy s >= 0, got -0.1"),
    (lambda: make_betas("sqrt", s=1.0), ValueError, r"^s must satisfy 0 <= s < 1"),
    (lambda: make_betas("cosine", max_beta=0.0), ValueError, r"^max_beta must satisfy 0 < max_beta <= 1"),
    (lambda: alphas_cumprod(torch.tensor([0.1, 0.0])), ValueError, r"^betas must have values in \(0, 1\]; got 0.0"),
    (lambda: alphas_cumprod(torch.tensor([0.1, 1.5])), ValueError, r"^betas must have values in \(0, 1\]; got 1.5"),
    (lambda: alphas_cumprod(torch.ones(2, 2) / 2), ValueError, r"^betas must be a non-empty 1-D tensor"),
    (lambda: alphas_cumprod([0.1, 0.2]), TypeError, r"^betas must be a torch.Tensor"),
    (lambda: snr(torch.tensor([-0.5])), ValueError, r"^alphas_cumprod must have values in \[0, 1\]"),
    (lambda: log_snr(torch.tensor([1.5])), ValueError, r"^alphas_cumprod must have values in \[0, 1\]"),
    (lambda: alphas_cumprod_from_sigmas(torch.tensor([-1.0])), ValueError, r"^sigmas must have values in \[0, inf\]"),
    (lambda: rescale_zero_terminal_snr(torch.tensor([0.1])), ValueError, r"^betas must have at least 2"),
    (lambda: inference_timesteps(1000, 0, "leading"), ValueError, r"^num_steps must be an int >= 1, got 0"),
    (
        lambda: inference_timesteps(1000, 1001, "leading"),
        ValueError,
        r"^num_steps must be <= num_train_steps \(1000\), got 1001",
    ),
    (lambda: inference_timesteps(0, 1, "leading"), ValueError, r"^num_train_steps must be an int >= 1"),
    (
        lambda: inference_timesteps(1000, 10, "uniform"),
        ValueError,
        r"^spacing must be one of \['leading', 'trailing', 'linspace'\], got 'uniform'",
    ),
    (
        lambda: inference_timesteps(1000, 10, "trailing", steps_offset=1),
        ValueError,
        r"^steps_offset is only used with spacing='leading'",
    ),
    (
        lambda: inference_timesteps(1000, 10, "leading", steps_offset=-1),
        ValueError,
        r"^steps_offset must be an int >= 0",
    ),
    (
        lambda: inference_timesteps(1000, 1000, "leading", steps_offset=1),
        ValueError,
        r"^steps_offset=1 puts timestep 1000 past",
    ),
    (lambda: sigmas_karras(0, 0.1, 10.0), ValueError, r"^n must be an int >= 1, got 0"),
    (lambda: sigmas_karras(10, 0.1, 10.0, rho=0.0), ValueError, r"^rho must satisfy rho > 0, got 0"),
    (lambda: sigmas_polyexponential(10, 0.1, 10.0, rho=-1.0), ValueError, r"^rho must satisfy rho > 0"),
    (
        lambda: sigmas_exponential(10, 10.0, 10.0),
        ValueError,
        r"^sigma_max must satisfy sigma_max > sigma_min \(10.0\), got 10.0",
    ),
    (lambda: sigmas_karras(10, 0.0, 10.0), ValueError, r"^sigma_min must satisfy sigma_min > 0, got 0"),
    (lambda: sigmas_exponential(10, -1.0, 10.0), ValueError, r"^sigma_min must satisfy sigma_min > 0"),
    (
        lambda: sigmas_from_timesteps(torch.tensor([10]), alphas_cumprod(GOOD_BETAS)),
        ValueError,
        r"^timesteps must have values in \[0, 9\]; got 10",
    ),
    (
        lambda: sigmas_from_timesteps(torch.tensor([1.0]), alphas_cumprod(GOOD_BETAS)),
        TypeError,
        r"^timesteps must be an integer tensor",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_INPUT, ids=[m for _, _, m in BAD_INPUT])
def test_bad_input_names_the_parameter(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()
