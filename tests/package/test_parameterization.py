"""x0 / eps / v / score conversions: round trips, diffusers' own conversions, and the Gaussian score."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_internals.parameterization import (
    PREDICTION_TYPES,
    denoised_from_prediction,
    eps_from_prediction,
    eps_from_v,
    eps_from_x0,
    score_from_eps,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from diffusion_internals.utils import broadcast_like

FAST = settings(max_examples=30, deadline=None)
CLOSE = dict(rtol=1e-9, atol=1e-9)


@st.composite
def noisy_batch(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float | torch.Tensor]:
    """x0, eps, x_t = sqrt(a) x0 + sqrt(1 - a) eps (Ho et al. 2020, eq. 4) and a, a scalar or (B,)."""
    batch = draw(st.integers(1, 4))
    shape = (batch,) + tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))  # (B, ...)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x0 = torch.randn(shape, generator=generator, dtype=torch.float64)
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    values = draw(st.lists(st.floats(1e-4, 1 - 1e-4), min_size=batch, max_size=batch))
    alpha_bar: float | torch.Tensor = values[0] if draw(st.booleans()) else torch.tensor(values, dtype=torch.float64)
    a = torch.as_tensor(alpha_bar, dtype=torch.float64).reshape(-1, *([1] * (len(shape) - 1)))  # (B or 1, 1, ...)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    return x0, eps, x_t, alpha_bar


@FAST
@given(noisy_batch())
def test_conversions_round_trip(batch: tuple) -> None:
    x0, eps, x_t, alpha_bar = batch
    torch.testing.assert_close(x0_from_eps(x_t, eps, alpha_bar), x0, **CLOSE)
    torch.testing.assert_close(eps_from_x0(x_t, x0, alpha_bar), eps, **CLOSE)
    v = v_from_x0_eps(x0, eps, alpha_bar)
    torch.testing.assert_close(x0_from_v(x_t, v, alpha_bar), x0, **CLOSE)
    torch.testing.assert_close(eps_from_v(x_t, v, alpha_bar), eps, **CLOSE)


@FAST
@given(noisy_batch())
def test_score_is_the_gaussian_score_of_q_xt_given_x0(batch: tuple) -> None:
    # grad_x log N(x; sqrt(a) x0, (1 - a) I) = -(x - sqrt(a) x0) / (1 - a), written out independently.
    x0, eps, x_t, alpha_bar = batch
    a = torch.as_tensor(alpha_bar, dtype=torch.float64).reshape(-1, *([1] * (x0.ndim - 1)))
    torch.testing.assert_close(score_from_eps(eps, alpha_bar), -(x_t - a.sqrt() * x0) / (1 - a), **CLOSE)


def outputs(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
    """What an exact network of each type outputs, from the definitions: eps, v (Salimans & Ho 2022, Sec. 4), x0."""
    return {"epsilon": eps, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0, "sample": x0}


@FAST
@given(noisy_batch())
def test_each_prediction_type_gives_back_eps_x0_and_its_target(batch: tuple) -> None:
    x0, eps, x_t, alpha_bar = batch
    a = torch.as_tensor(alpha_bar, dtype=torch.float64).reshape(-1, *([1] * (x0.ndim - 1)))  # (B or 1, 1, ...)
    sigma = ((1 - a) / a).sqrt()  # the same noise level in the view x = x0 + sigma eps = x_t / sqrt(a)
    for prediction_type, output in outputs(x0, eps, a).items():
        torch.testing.assert_close(training_target(prediction_type, x0, eps, alpha_bar), output, **CLOSE)
        torch.testing.assert_close(eps_from_prediction(prediction_type, x_t, output, alpha_bar), eps, **CLOSE)
        x = x0 + sigma * eps
        torch.testing.assert_close(denoised_from_prediction(prediction_type, x, sigma, output), x0, **CLOSE)
    assert set(outputs(x0, eps, a)) == set(PREDICTION_TYPES)


def test_denoised_from_prediction_keeps_the_dtype_of_x() -> None:
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)).half()
    sigma = torch.tensor([0.5, 4.0], dtype=torch.float64).reshape(2, 1)
    for prediction_type in PREDICTION_TYPES:
        assert denoised_from_prediction(prediction_type, x, sigma, x).dtype == torch.float16


def test_v_matches_diffusers_get_velocity() -> None:
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    x0, eps = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)  # (B, C, H, W)
    t = torch.tensor([0, 321, 999])
    ours = v_from_x0_eps(x0, eps, scheduler.alphas_cumprod[t])
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, scheduler.get_velocity(x0, eps, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_matches_diffusers_ddim_pred_original_sample(prediction_type: str) -> None:
    scheduler = DDIMScheduler(prediction_type=prediction_type, clip_sample=False)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(0)
    x_t, output = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    for t in scheduler.timesteps[[0, 25, 49]]:
        oracle = scheduler.step(output, int(t), x_t, eta=0.0).pred_original_sample
        a = scheduler.alphas_cumprod[t]
        ours = x0_from_eps(x_t, output, a) if prediction_type == "epsilon" else x0_from_v(x_t, output, a)
        torch.testing.assert_close(ours, oracle, rtol=1e-5, atol=1e-5)


def test_results_keep_the_dtype_of_x() -> None:
    x = torch.randn(2, 3, dtype=torch.float32)
    for f in (x0_from_eps, eps_from_x0, v_from_x0_eps, x0_from_v, eps_from_v):
        assert f(x, x, torch.tensor([0.3, 0.6], dtype=torch.float64)).dtype == torch.float32
    assert score_from_eps(x.half(), 0.5).dtype == torch.float16


# ----------------------------------------------------------------------------- the shape contract


def test_broadcast_like_shapes() -> None:
    x = torch.zeros(4, 3, 8, 8)  # (B, C, H, W)
    assert broadcast_like(0.5, x).shape == (1, 1, 1, 1)
    assert broadcast_like(torch.tensor(0.5), x).shape == (1, 1, 1, 1)
    assert broadcast_like(torch.arange(4), x).shape == (4, 1, 1, 1)
    assert broadcast_like(torch.arange(4), x).dtype == torch.float64
    assert broadcast_like(torch.arange(4), x)[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert broadcast_like(torch.arange(4), torch.zeros(4)).shape == (4,)


# ----------------------------------------------------------------------------- bad input

X = torch.zeros(2, 3)
BAD_INPUT = [
    (lambda: x0_from_eps(X, X, 0.0), ValueError, r"^alpha_bar must lie in \(0, 1\], got \[0.0\]"),
    (
        lambda: eps_from_x0(X, X, torch.tensor([0.5, 1.0])),
        ValueError,
        r"^alpha_bar must lie in \[0, 1\), got \[0.5, 1.0\]",
    ),
    (lambda: score_from_eps(X, 1.0), ValueError, r"^alpha_bar must lie in \[0, 1\), got \[1.0\]"),
    (lambda: x0_from_v(X, X, 1.5), ValueError, r"^alpha_bar must lie in \[0, 1\], got \[1.5\]"),
    (
        lambda: eps_from_v(X, X, torch.tensor([0.5, 0.5, 0.5])),
        ValueError,
        r"^alpha_bar must be a scalar or have shape \(B,\) = \(2,\) to match x of shape \(2, 3\); got shape \(3,\)",
    ),
    (lambda: v_from_x0_eps(X, X, torch.full((2, 1), 0.5)), ValueError, r"^alpha_bar must be a scalar or have shape"),
    (
        lambda: x0_from_eps(X, torch.zeros(2, 4), 0.5),
        ValueError,
        r"^eps must be a tensor of the same shape as x_t, \(2, 3\); got \(2, 4\)",
    ),
    (
        lambda: x0_from_v(X, torch.zeros(3), 0.5),
        ValueError,
        r"^v must be a tensor of the same shape as x_t, \(2, 3\); got \(3,\)",
    ),
    (lambda: eps_from_x0(X, X, "0.5"), TypeError, r"^alpha_bar must be a python number"),
    (
        lambda: training_target("x0", X, X, 0.5),
        ValueError,
        r"^prediction_type must be one of \['epsilon', 'v_prediction', 'sample'\], got 'x0'",
    ),
    (lambda: eps_from_prediction("v", X, X, 0.5), ValueError, r"^prediction_type must be one of"),
    (lambda: denoised_from_prediction("eps", X, torch.ones(1, 1), X), ValueError, r"^prediction_type must be one of"),
    (lambda: broadcast_like(0.5, torch.tensor(1.0)), ValueError, r"x must have a batch dimension"),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_INPUT, ids=[m for _, _, m in BAD_INPUT])
def test_bad_input_names_the_parameter(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()
