"""Rectified flow in the sigma view, against diffusers' FlowMatchEulerDiscreteScheduler and closed forms.

Oracles: diffusers' scheduler (its set_timesteps grid with a static and a dynamic shift, its step loop) driving
an exact velocity field for Gaussian-mixture data, v = (x_t - E[x0 | x_t]) / t; the exact denoiser of the
mixture (a FlowDenoiser of the exact velocity must be that denoiser); the derivative of the path by autograd;
the exact probability-flow solution for Gaussian data.
"""

from __future__ import annotations

import math

import diffusers
import pytest
import torch

from diffusion_internals import flow, samplers, sampling
from diffusion_internals.denoisers import GaussianDenoiser, GaussianMixtureDenoiser, gaussian_ode_solution

ULP = 2.0**-23
UNITS = 8  # float32 rounding of diffusers' loop, in ULP x max |x0| (tests/package/test_diffusers_parity.py)
SHAPE = (3, 2, 4, 4)
MIXTURE = GaussianMixtureDenoiser(
    torch.randn((3,) + SHAPE[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    torch.tensor([0.4, 0.7, 0.5]),
    torch.tensor([0.3, 0.3, 0.4]),
)


def exact_velocity(denoiser):
    """v(x_t, 1000 t) = (x_t - D(x_t / (1 - t), t / (1 - t))) / t, the exact velocity of the denoiser's data."""

    def velocity(x_t: torch.Tensor, timestep: torch.Tensor, **cond) -> torch.Tensor:
        t = (timestep.to(torch.float64) / 1000).reshape(-1).expand(x_t.shape[0])  # (B,)
        t_ = t.reshape((-1,) + (1,) * (x_t.ndim - 1))
        xt = x_t.to(torch.float64)
        x = torch.where(t_ == 1, xt, xt / (1 - t_))  # at t = 1 the denoiser's x is the noise itself
        x0 = denoiser(x, torch.where(t == 1, math.inf, t / (1 - t)), **cond).to(torch.float64)
        return ((xt - x0) / t_).to(x_t.dtype)

    return velocity


def error_units(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return (ours - theirs).abs().max().item() / (ULP * theirs.abs().max().item())


@pytest.mark.parametrize("shift", [1.0, 1.5, 3.0, 6.0])
@pytest.mark.parametrize("steps", [1, 4, 10, 28, 50])
def test_static_shift_grid_matches_diffusers(steps, shift):
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps)
    ours = flow.flow_timesteps(steps, shift=shift)
    assert ours.dtype == torch.float64 and ours[0] == 1 and ours[-1] == 0
    torch.testing.assert_close(ours.float(), scheduler.sigmas, rtol=2e-7, atol=1e-7)
    torch.testing.assert_close((ours[:-1] * 1000).float(), scheduler.timesteps, rtol=2e-7, atol=0)


@pytest.mark.parametrize("image_seq_len", [256, 1024, 4096, 8192])
def test_dynamic_shift_grid_matches_diffusers(image_seq_len):
    # Flux: mu linear in the token count (diffusers' calculate_shift), t -> e^mu / (e^mu + 1/t - 1).
    mu = flow.dynamic_shift_mu(image_seq_len)
    slope = (1.15 - 0.5) / (4096 - 256)
    assert mu == pytest.approx(0.5 + slope * (image_seq_len - 256), rel=1e-12)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    scheduler.set_timesteps(20, mu=mu)
    torch.testing.assert_close(flow.flow_timesteps(20, mu=mu).float(), scheduler.sigmas, rtol=2e-7, atol=1e-7)
    # The dynamic shift is the static one with shift = e^mu, on an unshifted t_min.
    t = torch.linspace(0.01, 1, 7, dtype=torch.float64)
    torch.testing.assert_close(flow.shift_timesteps(t, math.exp(mu)), 1 / (1 + (1 / t - 1) / math.exp(mu)))


def diffusers_euler(scheduler, velocity, z: torch.Tensor, steps: int, **set_kwargs) -> torch.Tensor:
    scheduler.set_timesteps(steps, **set_kwargs)
    x = z.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(velocity(x, t.expand(x.shape[0])), t, x).prev_sample
    return x.double()


@pytest.mark.parametrize("steps, shift, mu", [(10, 1.0, None), (28, 3.0, None), (12, 1.0, 0.8)])
def test_euler_on_the_flow_denoiser_matches_diffusers(steps, shift, mu):
    # Our Euler in the sigma view, from x = z at sigma = inf, on the FlowDenoiser of the exact velocity: diffusers'
    # flow-matching Euler loop to float32 rounding (observed < 3 units); and sample_flow_euler equals it in float64.
    velocity = exact_velocity(MIXTURE)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=mu is not None)
    theirs = diffusers_euler(scheduler, velocity, z, steps, **({} if mu is None else {"mu": mu}))
    sigmas = flow.flow_sigmas(steps, shift=shift, mu=mu)
    assert math.isinf(sigmas[0])
    ours = samplers.sample_euler(flow.FlowDenoiser(velocity), z.double(), sigmas)
    assert error_units(ours, theirs) <= UNITS, error_units(ours, theirs)
    in_t = flow.sample_flow_euler(velocity, z.double(), flow.flow_timesteps(steps, shift=shift, mu=mu))
    torch.testing.assert_close(in_t, ours, rtol=0, atol=1e-12)
    front_door = sampling.sample(
        flow.FlowDenoiser(velocity),
        SHAPE,
        sampler="euler",
        steps=steps,
        schedule="flow",
        shift=shift,
        mu=mu,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
    )  # x = z ~ N(0, I) itself at sigma = inf, no sqrt(1 + sigma^2) scale
    z64 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(
        front_door, samplers.sample_euler(flow.FlowDenoiser(velocity), z64, sigmas), rtol=0, atol=0
    )


def test_flow_denoiser_of_the_exact_velocity_is_the_exact_denoiser():
    # c_in = c_skip = 1 / (1 + sigma), c_out = -sigma / (1 + sigma), t = sigma / (1 + sigma): any slip breaks this.
    denoiser = flow.FlowDenoiser(exact_velocity(MIXTURE))
    x = 2 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma = torch.tensor([0.05, 1.3, 40.0], dtype=torch.float64)
    torch.testing.assert_close(denoiser(x, sigma), MIXTURE(x, sigma), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(denoiser(x, math.inf), MIXTURE(x, math.inf), rtol=1e-10, atol=1e-10)
    # so every sampler of the package runs on a flow model: Heun on a Karras grid, through the wrapper or not.
    sigmas = sampling.sigmas_for(MIXTURE, 12, sigma_min=0.01, sigma_max=50.0)
    z = 50 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(
        samplers.sample_heun(denoiser, z, sigmas), samplers.sample_heun(MIXTURE, z, sigmas), rtol=1e-9, atol=1e-9
    )


def test_path_target_and_views():
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(SHAPE, generator=g, dtype=torch.float64), torch.randn(SHAPE, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    x_t = flow.flow_interpolate(x0, eps, t)
    # The target is the time derivative of the path (autograd), not its negative.
    (grad,) = torch.autograd.grad(x_t.sum(), t)
    torch.testing.assert_close(grad, flow.flow_target(x0, eps).sum(dim=(1, 2, 3)))
    t = t.detach()
    sigma = flow.sigma_from_t(t)
    torch.testing.assert_close(sigma, t / (1 - t))
    torch.testing.assert_close(flow.t_from_sigma(sigma), t)
    # x_t / (1 - t) = x0 + sigma eps: the variance-exploding view of the same point.
    torch.testing.assert_close(x_t.detach() / (1 - t).reshape(-1, 1, 1, 1), x0 + sigma.reshape(-1, 1, 1, 1) * eps)
    torch.testing.assert_close(
        flow.denoised_from_velocity(x_t.detach(), flow.flow_target(x0, eps), t), x0, rtol=1e-12, atol=1e-12
    )
    assert math.isinf(flow.sigma_from_t(1.0)) and flow.t_from_sigma(math.inf) == 1 and flow.t_from_sigma(0.0) == 0


def test_flow_euler_converges_to_the_exact_solution_at_first_order():
    # Gaussian data N(0.3, 0.8^2): the ODE from t = 1 (sigma = inf) maps z to 0.3 + 0.8 z exactly.
    mean, std = 0.3, 0.8
    velocity = exact_velocity(GaussianDenoiser(mean, std))
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = gaussian_ode_solution(z, math.inf, 0.0, mean, std)
    errors = [
        (flow.sample_flow_euler(velocity, z, flow.flow_timesteps(n, shift=3.0)) - exact).abs().max().item()
        for n in (20, 40, 80)
    ]
    # t_min = shift(1/1000) is not 0, so the last step is a jump; measure the order on the first two halvings.
    assert 1.6 < errors[0] / errors[1] < 2.5 and 1.6 < errors[1] / errors[2] < 2.5, errors


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="shift"):
        flow.flow_timesteps(10, shift=0.0)
    with pytest.raises(ValueError, match="either shift or mu"):
        flow.flow_timesteps(10, shift=3.0, mu=0.5)
    with pytest.raises((ValueError, TypeError), match="steps"):
        flow.flow_timesteps(0)
    with pytest.raises(ValueError, match="t must have values in"):
        flow.shift_timesteps(torch.tensor([1.5]), 3.0)
    with pytest.raises(ValueError, match="timesteps must be strictly decreasing"):
        flow.sample_flow_euler(exact_velocity(MIXTURE), torch.zeros(SHAPE), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="max_seq_len"):
        flow.dynamic_shift_mu(1024, base_seq_len=256, max_seq_len=256)
    with pytest.raises(ValueError, match="shift and mu are only used by schedule='flow'"):
        sampling.sigmas_for(MIXTURE, 10, sigma_min=0.1, sigma_max=10.0, shift=3.0)


def test_python_floats_are_computed_in_float64():
    # torch.as_tensor(0.2) is float32; the schedule functions promise float64 (STYLE habit 2).
    assert flow.shift_timesteps(0.2, 3.0).item() == pytest.approx(0.6 / 1.4, rel=1e-15)
    assert flow.sigma_from_t(0.2).item() == pytest.approx(0.25, rel=1e-15)
    assert flow.t_from_sigma(0.25).item() == pytest.approx(0.2, rel=1e-15)
