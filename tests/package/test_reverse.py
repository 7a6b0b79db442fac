"""The reverse steps, ddpm_step and ddim_step, and their bad input.

Oracles: diffusers' DDPMScheduler (step with fixed_small variance) and DDIMScheduler, and the closed form of
Ho et al. (2020, eq. 11). t_prev is checked like t, under its own name and range [-1, T - 1].
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusion_internals import schedules
from diffusion_internals.reverse import ddim_step, ddpm_step
from diffusion_internals.schedules import alphas_cumprod, make_betas

AC = alphas_cumprod(make_betas("linear", 10))
X = torch.zeros(2, 3)
BAD_T_PREV = [
    # A tensor t_prev used to be reported as "t", shifted by one, against a schedule of length T + 1.
    (lambda: ddim_step(X, 5, X, AC, t_prev=torch.tensor(-5)), r"^t_prev must lie in \[-1, 9\] .* length 10, got -5"),
    (lambda: ddim_step(X, 5, X, AC, t_prev=torch.tensor([-2, 1])), r"^t_prev must lie in \[-1, 9\] .* got \[-2, 1\]"),
    (lambda: ddim_step(X, 5, X, AC, t_prev=torch.tensor(2.0)), r"^t_prev must be an int or an integer tensor"),
    (lambda: ddim_step(X, 5, X, AC, t_prev=torch.tensor([1, 2, 3])), r"^t_prev must be an int or have shape \(B,\)"),
    (lambda: ddim_step(X, 5, X, AC, t_prev=2.0), r"^t_prev must be an int or an integer tensor"),
    (lambda: ddim_step(X, 5, X, AC, t_prev=-2), r"^t_prev must lie in \[-1, 9\] .* got -2"),
    (lambda: ddpm_step(X, 5, X, AC, X, t_prev=torch.tensor(-3)), r"^t_prev must lie in \[-1, 9\] .* got -3"),
    (lambda: ddim_step(X, 5, X, AC, t_prev=7), r"^t_prev must be earlier than t"),
]


@pytest.mark.parametrize(("call", "match"), BAD_T_PREV, ids=[m for _, m in BAD_T_PREV])
def test_bad_t_prev_names_t_prev_and_its_range(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_t_prev_minus_one_is_the_clean_data() -> None:
    # Closed form: at alpha_bar' = 1 both steps return x0_hat = (x_t - sqrt(1 - a) eps) / sqrt(a).
    x_t, eps = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    t = torch.tensor([4, 9])
    a = AC[t][:, None]
    x0_hat = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    for t_prev in (-1, torch.tensor([-1, -1])):
        torch.testing.assert_close(ddim_step(x_t, t, eps, AC, t_prev=t_prev), x0_hat, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ddpm_step(x_t, t, eps, AC, eps, t_prev=t_prev), x0_hat, rtol=1e-12, atol=1e-12)


T = 1000


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_ddpm_step_is_diffusers_ddpm_scheduler_step(t):
    scheduler = DDPMScheduler(
        num_train_timesteps=T, beta_schedule="linear", variance_type="fixed_small", clip_sample=False
    )
    scheduler.set_timesteps(T)
    abar = schedules.alphas_cumprod(schedules.make_betas("linear", T))
    x_t = torch.randn(3, 2, 5, generator=gen(0))
    eps_hat = torch.randn(3, 2, 5, generator=gen(1))
    expected = scheduler.step(eps_hat, t, x_t, generator=gen(2)).prev_sample
    noise = torch.randn(3, 2, 5, generator=gen(2))  # the draw diffusers makes from the same generator
    # diffusers works in float32, where 1 - alpha_bar_t loses digits near t = 0: an absolute error of
    # about float32 epsilon / (1 - alpha_bar_t) is its round-off, not a difference of method.
    atol = max(1e-6, 1e-7 / float(1 - abar[t]))
    torch.testing.assert_close(ddpm_step(x_t, t, eps_hat, abar, noise), expected, rtol=1e-5, atol=atol)


def test_ddpm_step_is_ho_et_al_eq_11_with_per_sample_timesteps():
    betas = schedules.make_betas("cosine", T)
    abar = schedules.alphas_cumprod(betas)
    t = torch.tensor([0, 3, 400, 999])
    x_t, eps_hat, z = (torch.randn(4, 6, generator=gen(i), dtype=torch.float64) for i in range(3))
    a, ab, b = (1 - betas[t])[:, None], abar[t][:, None], betas[t][:, None]
    ab_prev = torch.where(t > 0, abar[(t - 1).clamp_min(0)], torch.ones(4, dtype=torch.float64))[:, None]
    expected = (x_t - b / (1 - ab).sqrt() * eps_hat) / a.sqrt() + ((1 - ab_prev) / (1 - ab) * b).sqrt() * z
    torch.testing.assert_close(ddpm_step(x_t, t, eps_hat, abar, z), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="noise must be a tensor of the same shape"):
        ddpm_step(x_t, t, eps_hat, abar, z[:2])
    with pytest.raises(ValueError, match="t must lie in"):
        ddpm_step(x_t, 1000, eps_hat, abar, z)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddpm_step_over_a_skipped_grid_is_diffusers_ddpm_scheduler(spacing):
    scheduler = DDPMScheduler(
        num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=False, timestep_spacing=spacing
    )
    scheduler.set_timesteps(20)
    timesteps = schedules.inference_timesteps(T, 20, spacing)
    assert timesteps.tolist() == scheduler.timesteps.tolist()
    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", T))
    x_t, eps_hat = torch.randn(2, 1, 4, 4, generator=gen(0)), torch.randn(2, 1, 4, 4, generator=gen(1))
    for i in (1, 10, 19):  # leading's first step (i = 0, t = 950) and later ones; the last goes to t_prev = -1
        t = int(timesteps[i])
        t_prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        expected = scheduler.step(eps_hat, t, x_t, generator=gen(2)).prev_sample
        got = ddpm_step(x_t, t, eps_hat, abar, torch.randn(2, 1, 4, 4, generator=gen(2)), t_prev=t_prev)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=max(1e-6, 1e-7 / float(1 - abar[t])))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_is_diffusers_ddim_scheduler_step(eta):
    scheduler = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=False)
    scheduler.set_timesteps(50)  # leading: 980, 960, ..., 0; set_alpha_to_one: the last step goes to alpha_bar 1
    abar = schedules.alphas_cumprod(schedules.make_betas("linear", T))
    x_t, eps_hat, z = (torch.randn(3, 2, 5, generator=gen(i)) for i in range(3))
    for t in (980, 500, 20, 0):
        expected = scheduler.step(eps_hat, t, x_t, eta=eta, variance_noise=z).prev_sample
        got = ddim_step(x_t, t, eps_hat, abar, t_prev=max(t - 20, -1), eta=eta, noise=z)  # diffusers: -20
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=max(1e-6, 1e-7 / float(1 - abar[t])))


def test_ddim_at_eta_1_is_the_ddpm_step_and_at_eta_0_keeps_the_deterministic_path():
    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", T))
    x_t, eps_hat, z = (torch.randn(4, 3, generator=gen(i), dtype=torch.float64) for i in range(3))
    per_sample = (torch.tensor([999, 500, 10, 3]), torch.tensor([949, 250, -1, 2]))
    for t, t_prev in ((999, 979), (500, 0), (10, -1), per_sample):
        torch.testing.assert_close(
            ddim_step(x_t, t, eps_hat, abar, t_prev=t_prev, eta=1.0, noise=z),
            ddpm_step(x_t, t, eps_hat, abar, z, t_prev=t_prev),
            rtol=1e-10,
            atol=1e-12,
        )
    # eta = 0: if eps_hat is the true noise of x_t = q_sample(x0), the step lands exactly on q_sample(x0) at t_prev.
    x0 = torch.randn(4, 3, generator=gen(5), dtype=torch.float64)
    x_999 = abar[999].sqrt() * x0 + (1 - abar[999]).sqrt() * z
    torch.testing.assert_close(
        ddim_step(x_999, 999, z, abar, t_prev=400),
        abar[400].sqrt() * x0 + (1 - abar[400]).sqrt() * z,
        rtol=1e-9,
        atol=1e-9,
    )
    with pytest.raises(ValueError, match=r"^eta must satisfy eta >= 0 \(0 = DDIM, 1 = DDPM's variance\), got -1.0"):
        ddim_step(x_t, 5, eps_hat, abar, eta=-1.0)
    with pytest.raises(ValueError, match="noise must be a tensor"):
        ddim_step(x_t, 5, eps_hat, abar, eta=0.5)
    with pytest.raises(ValueError, match="t_prev must be earlier than t"):
        ddim_step(x_t, 5, eps_hat, abar, t_prev=7)
    with pytest.raises(ValueError, match="eta=3.0 is too large"):
        ddim_step(x_t, 999, eps_hat, abar, t_prev=10, eta=3.0, noise=z)
