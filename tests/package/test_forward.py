"""The forward process against diffusers, the Markov chain itself, and Gaussian conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_internals.forward import q_posterior, q_sample, q_step
from diffusion_internals.schedules import alphas_cumprod, make_betas, rescale_zero_terminal_snr

FAST = settings(max_examples=15, deadline=None)
KINDS = ["linear", "scaled_linear", "cosine", "sqrt", "sigmoid", "zero_snr"]


def _betas(kind: str, num_steps: int) -> torch.Tensor:
    if kind == "zero_snr":  # Lin et al. 2024: alpha_bar_{T-1} = 0, the edge case of the posterior
        return rescale_zero_terminal_snr(make_betas("scaled_linear", num_steps))
    return make_betas(kind, num_steps)


# ----------------------------------------------------------------------------- q_sample


def test_q_sample_matches_diffusers_add_noise() -> None:
    scheduler = DDPMScheduler()  # linear 1e-4 .. 0.02, T = 1000
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8, generator=generator)  # (B, C, H, W)
    noise = torch.randn(4, 3, 8, 8, generator=generator)
    t = torch.tensor([0, 10, 500, 999])
    ours = q_sample(x0, t, alphas_cumprod(make_betas("linear")), noise)
    assert ours.dtype == torch.float32 and ours.shape == x0.shape
    torch.testing.assert_close(ours, scheduler.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5)


@FAST
@given(kind=st.sampled_from(KINDS), t=st.integers(0, 199), x0=st.floats(-3, 3), seed=st.integers(0, 2**31))
def test_q_sample_is_the_law_of_the_iterated_chain(kind: str, t: int, x0: float, seed: int) -> None:
    # Run N independent chains through q_step for steps 0..t and compare their mean and variance with
    # q(x_t | x0) = N(sqrt(alpha_bar_t) x0, 1 - alpha_bar_t), read off q_sample with noise 0 and 1.
    n = 20_000
    betas = _betas(kind, 200)
    generator = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1), x0, dtype=torch.float64)  # (N, 1): N chains of one pixel
    for s in range(t + 1):
        x = q_step(x, s, betas, torch.randn(n, 1, generator=generator, dtype=torch.float64))
    one = torch.ones(1, 1, dtype=torch.float64)
    mean = q_sample(x0 * one, t, alphas_cumprod(betas), 0 * one).item()
    var = q_sample(0 * one, t, alphas_cumprod(betas), one).item() ** 2
    # Six standard errors: of the mean sqrt(var / N); of the sample variance var * sqrt(2 / (N - 1)).
    assert abs(x.mean().item() - mean) <= 6 * math.sqrt(var / n) + 1e-12
    assert abs(x.var().item() - var) <= 6 * var * math.sqrt(2 / (n - 1)) + 1e-12


def test_q_step_takes_x_minus_1_to_x_0_with_betas_0() -> None:
    # 0-based convention: q_step(x0, 0, ...) is q_sample(x0, 0, ...) with the same noise.
    betas = make_betas("cosine", 50)
    x0, noise = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(
        q_step(x0, 0, betas, noise), q_sample(x0, 0, alphas_cumprod(betas), noise), rtol=1e-12, atol=1e-12
    )


def test_per_sample_t_matches_one_sample_at_a_time() -> None:
    ac = alphas_cumprod(make_betas("linear"))
    x0, noise = torch.randn(3, 2, 4), torch.randn(3, 2, 4)  # (B, C, L)
    t = torch.tensor([5, 0, 999])
    batched = q_sample(x0, t, ac, noise)
    for b in range(3):
        assert torch.equal(batched[b : b + 1], q_sample(x0[b : b + 1], int(t[b]), ac, noise[b : b + 1]))


# ----------------------------------------------------------------------------- q_posterior


def _gaussian_conditioning(betas: list[float], t: int, x0: float, x_t: float) -> tuple[float, float]:
    """Condition the joint Gaussian of (x_{t-1}, x_t) given x0, built by running the chain's moments."""
    m, v = x0, 0.0  # mean and variance of x_{-1} = x0
    for s in range(t):  # moments of x_{t-1} after steps 0..t-1
        m, v = math.sqrt(1 - betas[s]) * m, (1 - betas[s]) * v + betas[s]
    c = math.sqrt(1 - betas[t])
    m2, v2, cov = c * m, c * c * v + betas[t], c * v  # x_t = c x_{t-1} + sqrt(beta_t) eps
    return m + cov / v2 * (x_t - m2), v - cov * cov / v2


@FAST
@given(kind=st.sampled_from(KINDS), t=st.integers(1, 99), data=st.data())
def test_q_posterior_is_gaussian_conditioning(kind: str, t: int, data: st.DataObject) -> None:
    betas = _betas(kind, 100)
    batch = data.draw(st.integers(1, 4))
    x0 = torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=batch, max_size=batch)), dtype=torch.float64)
    x_t = torch.tensor(data.draw(st.lists(st.floats(-5, 5), min_size=batch, max_size=batch)), dtype=torch.float64)
    ts = torch.tensor(data.draw(st.lists(st.integers(1, 99), min_size=batch, max_size=batch)))
    ts[0] = t
    mean, variance = q_posterior(x0[:, None], x_t[:, None], ts, alphas_cumprod(betas))  # (B, 1) each
    for b in range(batch):
        expected_mean, expected_var = _gaussian_conditioning(betas.tolist(), int(ts[b]), x0[b].item(), x_t[b].item())
        assert math.isclose(mean[b, 0].item(), expected_mean, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(variance[b, 0].item(), expected_var, rel_tol=1e-9, abs_tol=1e-12)


def test_q_posterior_at_t_0_is_a_point_mass_at_x0() -> None:
    ac = alphas_cumprod(make_betas("linear"))
    x0, x_t = torch.randn(2, 3), torch.randn(2, 3)
    mean, variance = q_posterior(x0, x_t, 0, ac)
    assert torch.equal(mean, x0) and torch.equal(variance, torch.zeros(1, 1))


def test_q_posterior_keeps_dtype_and_broadcasts() -> None:
    ac = alphas_cumprod(make_betas("linear"))
    x0, x_t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mean, variance = q_posterior(x0, x_t, torch.tensor([3, 700]), ac)
    assert mean.dtype == variance.dtype == torch.float32
    assert mean.shape == (2, 3, 4, 4) and variance.shape == (2, 1, 1, 1)


# ----------------------------------------------------------------------------- bad input

AC = alphas_cumprod(make_betas("linear", 10))
X = torch.zeros(2, 3)
BAD_INPUT = [
    (lambda: q_sample(X, 10, AC, X), r"^t must lie in \[0, 9\] for alphas_cumprod of length 10, got 10"),
    (lambda: q_sample(X, -1, AC, X), r"^t must lie in \[0, 9\]"),
    (lambda: q_sample(X, torch.tensor([0, 10]), AC, X), r"^t must lie in \[0, 9\] .* got \[0, 10\]"),
    (lambda: q_sample(X, torch.tensor([1.0, 2.0]), AC, X), r"^t must be an int or an integer tensor"),
    (lambda: q_sample(X, 1.0, AC, X), r"^t must be an int or an integer tensor"),
    (lambda: q_sample(X, torch.tensor([1, 2, 3]), AC, X), r"^t must be an int or have shape \(B,\) = \(2,\)"),
    (lambda: q_sample(X, 1, AC, torch.zeros(2, 4)), r"^noise must be a tensor of the same shape as x, \(2, 3\)"),
    (lambda: q_sample(X, 1, AC[None], X), r"^alphas_cumprod must be a non-empty 1-D tensor"),
    (lambda: q_step(X, 1, AC + 1, X), r"^betas must have values in \[0, 1\]"),
    (lambda: q_posterior(X, torch.zeros(3, 3), 1, AC), r"^x_t must be a tensor of the same shape as x"),
    (lambda: q_posterior(X, X, 0, torch.ones(10)), r"^alphas_cumprod\[t\] must lie in \[0, 1\), got \[1.0\]"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_names_the_parameter(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
