"""What chapter 6 (Stable Diffusion in practice) states about the package, checked against independent oracles.

Oracles: the closed forms of the eps and v parameterisations (Salimans & Ho 2022; Karras et al. 2022,
Table 1), Stable Diffusion's published scheduler values as quoted by Lin et al. 2024 (sqrt(alpha_bar_T) =
0.068265, SNR(T) = 0.004682), diffusers' own scheduler configs and timesteps.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from diffusion_internals import schedules, sd
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.diffusers_compat import DIFFUSERS_SCHEDULERS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# The entries of a scheduler config that describe training, not sampling: a swap must keep them.
TRAINING_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")


def test_stable_diffusion_schedule_ends_where_lin_et_al_say():
    alphas_cumprod = schedules.alphas_cumprod(schedules.make_betas("scaled_linear", 1000))
    assert alphas_cumprod[-1].sqrt().item() == pytest.approx(0.068265, abs=5e-7)
    assert schedules.snr(alphas_cumprod)[-1].item() == pytest.approx(0.004682, abs=5e-7)
    assert schedules.sigmas_from_alphas_cumprod(alphas_cumprod)[-1].item() == pytest.approx(14.6146, abs=1e-4)
    rescaled = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas("scaled_linear")))
    assert rescaled[-1].item() == 0 and math.isinf(schedules.sigmas_from_alphas_cumprod(rescaled)[-1].item())
    assert rescaled[0].item() == pytest.approx(alphas_cumprod[0].item(), rel=1e-12)
    # SD's leading spacing with steps_offset=1: the first timesteps the chapter tabulates, as diffusers has them.
    for steps, first in ((5, 801), (10, 901), (25, 961), (50, 981)):
        ours = schedules.inference_timesteps(1000, steps, "leading", steps_offset=1)
        theirs = DDIMScheduler.from_config(sd.pipelines.SD15_SCHEDULER)
        theirs.set_timesteps(steps)
        assert int(ours[0]) == int(theirs.timesteps[0]) == first


@pytest.mark.parametrize("name", list(DIFFUSERS_SCHEDULERS))
def test_use_sampler_keeps_every_training_entry(name):
    # From SD 1.5's own scheduler config: the swap changes the update rule and the grid, never the training facts.
    pipe = sd.tiny_pipeline()
    original = dict(pipe.scheduler.config)
    sd.use_sampler(pipe, name)
    assert {key: pipe.scheduler.config[key] for key in TRAINING_KEYS} == {key: original[key] for key in TRAINING_KEYS}
    assert pipe.scheduler.config.timestep_spacing == "leading" and pipe.scheduler.config.steps_offset == 1


def test_eps_and_v_readings_of_one_output_are_the_closed_forms():
    # DiscreteDenoiser's two readings of the same network output o at noise level sigma:
    # eps: x - sigma o; v: x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) o. They agree as sigma -> 0.
    output = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    alphas_cumprod = schedules.alphas_cumprod(schedules.make_betas("scaled_linear"))

    def network(x_t, t, **cond):
        return output

    gaps = []
    for sigma in (0.03, 0.7, 1.6, 14.6):
        x_sigma = x * math.sqrt(1 + sigma**2)
        eps = DiscreteDenoiser(network, alphas_cumprod, prediction_type="epsilon")(x_sigma, sigma)
        v = DiscreteDenoiser(network, alphas_cumprod, prediction_type="v_prediction")(x_sigma, sigma)
        torch.testing.assert_close(eps, x_sigma - sigma * output, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(
            v, x_sigma / (1 + sigma**2) - sigma / math.sqrt(1 + sigma**2) * output, rtol=1e-6, atol=1e-5
        )
        gaps.append(((eps - v).norm() / eps.norm()).item())
    assert gaps == sorted(gaps) and gaps[0] < 2e-2 and gaps[-1] > 0.9, gaps
