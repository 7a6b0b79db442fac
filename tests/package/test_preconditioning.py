"""EDM preconditioning against diffusers' EDMEulerScheduler, EDM's own design rule, and the eps and v targets.

Oracles: diffusers' ``EDMEulerScheduler`` (its precondition_inputs / precondition_noise / precondition_outputs
and its Euler loop on a Karras grid); EDM's Appendix B.6 rule that the network's input and target have unit
variance for data of std sigma_data (checked in closed form for Gaussian data); the v target of Salimans & Ho
(parameterization.v_from_x0_eps) and the eps target, to which EDM's reduces at sigma_data = 1 and sigma_data -> inf.
"""

from __future__ import annotations

import math

import diffusers
import pytest
import torch

from diffusion_internals import parameterization, preconditioning, samplers, schedules
from diffusion_internals.denoisers import GaussianMixtureDenoiser

SIGMAS = torch.tensor([0.002, 0.05, 0.5, 1.0, 7.0, 80.0], dtype=torch.float64)
SHAPE = (3, 2, 4, 4)
MIXTURE = GaussianMixtureDenoiser(
    torch.randn((3,) + SHAPE[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    torch.tensor([0.4, 0.7, 0.5]),
    torch.tensor([0.3, 0.3, 0.4]),
)


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_coefficients_match_diffusers(sigma_data):
    # diffusers' EDMEulerScheduler with prediction_type="epsilon" is EDM's F with c_out > 0; "v_prediction" flips it.
    scheduler = diffusers.EDMEulerScheduler(sigma_data=sigma_data, prediction_type="epsilon")
    flipped = diffusers.EDMEulerScheduler(sigma_data=sigma_data, prediction_type="v_prediction")
    g = torch.Generator().manual_seed(1)
    for sigma in SIGMAS.tolist():
        x, f = (
            torch.randn(SHAPE, generator=g, dtype=torch.float64),
            torch.randn(SHAPE, generator=g, dtype=torch.float64),
        )
        c = preconditioning.edm_preconditioning(sigma, sigma_data=sigma_data)
        s = torch.tensor(sigma, dtype=torch.float64)
        torch.testing.assert_close(scheduler.precondition_inputs(x, s), c.c_in * x)
        torch.testing.assert_close(scheduler.precondition_noise(s), c.c_noise)
        torch.testing.assert_close(scheduler.precondition_outputs(x, f, s), c.c_skip * x + c.c_out * f)
        torch.testing.assert_close(flipped.precondition_outputs(x, f, s), c.c_skip * x - c.c_out * f)


def test_edm_euler_loop_matches_diffusers():
    # EDMEulerScheduler: Karras grid (rho 7) from sigma_max to sigma_min, x = z * init_noise_sigma, then
    # scale_model_input -> F(., c_noise) -> step. Ours: sample_euler on EDMDenoiser, same grid, float64.
    sigma_data = 0.5

    def network(x_in: torch.Tensor, c_noise: torch.Tensor, **cond) -> torch.Tensor:
        """The exact F for the mixture: (D(x, sigma) - c_skip x) / c_out, with sigma = e^{4 c_noise}."""
        sigma = (4 * c_noise.to(torch.float64)).exp()
        c = preconditioning.edm_preconditioning(sigma, sigma_data=sigma_data)
        shape = (-1,) + (1,) * (x_in.ndim - 1)
        x = x_in.to(torch.float64) / c.c_in.reshape(shape)
        return ((MIXTURE(x, sigma) - c.c_skip.reshape(shape) * x) / c.c_out.reshape(shape)).to(x_in.dtype)

    steps = 18
    scheduler = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=sigma_data)
    scheduler.set_timesteps(steps)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    x = z * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(network(scheduler.scale_model_input(x, t), t.expand(SHAPE[0])), t, x).prev_sample
    sigmas = schedules.sigmas_karras(steps, 0.002, 80.0)
    torch.testing.assert_close(sigmas[:-1].float(), scheduler.sigmas[:-1], rtol=2e-7, atol=0)
    denoiser = preconditioning.EDMDenoiser(network, sigma_data=sigma_data)
    ours = samplers.sample_euler(denoiser, z.double() * float(scheduler.init_noise_sigma), sigmas)
    error = (ours - x.double()).abs().max().item() / (2.0**-23 * x.abs().max().item())
    assert error <= 8, error  # float32 rounding, as tests/package/test_diffusers_parity.py
    # The wrapper of the exact F is the exact denoiser.
    probe = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(denoiser(probe, SIGMAS[1:4]), MIXTURE(probe, SIGMAS[1:4]))


def test_unit_variance_of_input_and_target_for_data_of_std_sigma_data():
    # Karras et al. 2022, App. B.6: Var(c_in x) = 1 and Var(F_target) = 1 when x0 ~ N(0, sigma_data^2).
    # Closed form: x = x0 + sigma eps, so Var(c_in x) = c_in^2 (sigma_data^2 + sigma^2) and
    # Var(F_target) = ((1 - c_skip)^2 sigma_data^2 + c_skip^2 sigma^2) / c_out^2.
    for sigma_data in (0.3, 0.5, 2.0):
        c = preconditioning.edm_preconditioning(SIGMAS, sigma_data=sigma_data)
        torch.testing.assert_close(c.c_in**2 * (sigma_data**2 + SIGMAS**2), torch.ones_like(SIGMAS))
        var_target = ((1 - c.c_skip) ** 2 * sigma_data**2 + c.c_skip**2 * SIGMAS**2) / c.c_out**2
        torch.testing.assert_close(var_target, torch.ones_like(SIGMAS))
    # and by sampling, through edm_target itself
    n = 200_000
    g = torch.Generator().manual_seed(4)
    x0 = 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
    for sigma in (0.1, 1.0, 10.0):
        assert preconditioning.edm_target(x0, eps, sigma).var().item() == pytest.approx(1.0, abs=0.015)


def test_v_prediction_is_edm_with_sigma_data_one_and_eps_its_large_sigma_data_limit():
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(SHAPE, generator=g, dtype=torch.float64), torch.randn(SHAPE, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 20.0], dtype=torch.float64)
    s = sigma.reshape(-1, 1, 1, 1)
    abar = 1 / (1 + sigma**2)
    v = parameterization.v_from_x0_eps(x0, eps, abar)
    # sigma_data = 1: F_target = -v, and D = c_skip x + c_out F is the v-denoiser of parameterization.
    torch.testing.assert_close(preconditioning.edm_target(x0, eps, sigma, sigma_data=1.0), -v)
    c = preconditioning.edm_preconditioning(sigma, sigma_data=1.0)
    x = x0 + s * eps
    f = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        c.c_skip.reshape(-1, 1, 1, 1) * x + c.c_out.reshape(-1, 1, 1, 1) * f,
        parameterization.denoised_from_prediction("v_prediction", x, s, -f),
    )
    # sigma_data -> inf: c_skip -> 1, c_out -> sigma, F_target -> -eps (the eps network, Table 1's "VP" row).
    torch.testing.assert_close(preconditioning.edm_target(x0, eps, sigma, sigma_data=1e6), -eps, rtol=0, atol=1e-6)
    # EDM's weight makes the D-loss the unweighted F-loss: lambda(sigma) c_out^2 = 1.
    c = preconditioning.edm_preconditioning(SIGMAS)
    torch.testing.assert_close(preconditioning.edm_loss_weight(SIGMAS) * c.c_out**2, torch.ones_like(SIGMAS))
    torch.testing.assert_close(preconditioning.edm_loss_weight(SIGMAS), (SIGMAS**2 + 0.25) / (0.5 * SIGMAS) ** 2)


def test_training_sigmas_are_log_normal():
    sigmas = preconditioning.edm_training_sigmas(200_000, generator=torch.Generator().manual_seed(6))
    log_sigma = sigmas.log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.01)  # standard error 0.0027
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.01)
    median = sigmas.median().item()
    assert median == pytest.approx(math.exp(-1.2), rel=0.02)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="sigma_data"):
        preconditioning.edm_preconditioning(1.0, sigma_data=0.0)
    with pytest.raises(ValueError, match=r"sigma must lie in \(0, inf\)"):
        preconditioning.edm_preconditioning(torch.tensor([0.0, 1.0]))
    denoiser = preconditioning.EDMDenoiser(lambda x, c, **k: x)
    with pytest.raises(ValueError, match="no input at sigma = inf.*sigma_max=80.0"):
        denoiser(torch.zeros(SHAPE), math.inf)
    with pytest.raises(ValueError, match="p_std"):
        preconditioning.edm_training_sigmas(4, p_std=0.0)
    with pytest.raises(ValueError, match="sigma_max"):
        preconditioning.EDMDenoiser(lambda x, c: x, sigma_min=1.0, sigma_max=0.5)
