"""The training loss, the loss per timestep, the trainer's custom schedules and callbacks.

Oracles: diffusers' DDPMScheduler (add_noise, get_velocity) and the minimum mean squared error of
eps-prediction for Gaussian data, which a network cannot beat: for x0 ~ N(0, s^2 I) the best eps-predictor is linear,
E[eps | x_t] = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar), and its error per dimension is
abar s^2 / (abar s^2 + 1 - abar).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from diffusion_internals import schedules
from diffusion_internals.course.checkpoints import alphas_cumprod_for, ddim_scheduler
from diffusion_internals.course.models import class_conditional_unet
from diffusion_internals.course.training import diffusion_loss, loss_by_timestep, train

T = 1000


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Recorder(torch.nn.Module):
    """A fixed 'network': a known function of (x_t, t) that remembers what it was called with."""

    def forward(self, x_t, t, class_labels=None):
        self.seen = (x_t, t, class_labels)
        return 0.3 * x_t + 0.001 * t.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_diffusion_loss_is_the_mse_against_diffusers_noising_and_targets(prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", T))
    x0 = torch.randn(6, 1, 4, 4, generator=gen(0))
    noise = torch.randn(6, 1, 4, 4, generator=gen(1))
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    model = Recorder()
    got = diffusion_loss(model, x0, t, noise, abar, prediction_type=prediction_type, class_labels=t % 10)

    x_t = scheduler.add_noise(x0, noise, t)
    target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t), "sample": x0}[prediction_type]
    expected = (model(x_t, t) - target).pow(2).mean((1, 2, 3))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.seen[0], x_t, rtol=1e-5, atol=1e-6)


def test_diffusion_loss_names_bad_arguments():
    abar = schedules.alphas_cumprod(schedules.make_betas("linear", T))
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t must be an integer tensor of shape"):
        diffusion_loss(Recorder(), x0, 5, x0, abar)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        diffusion_loss(Recorder(), x0, torch.tensor([1, 2]), x0, abar, prediction_type="eps")
    # An output of another shape used to broadcast against the target: a loss, silently of the wrong thing.
    images = torch.zeros(2, 3, 4, 4)
    with pytest.raises(
        ValueError, match=r"^model output must be a tensor of the same shape as x0, \(2, 3, 4, 4\); got \(2, 1, 4, 4\)"
    ):
        diffusion_loss(lambda x_t, t: x_t[:, :1], images, torch.tensor([1, 2]), images, abar)


class OptimalGaussianEps(torch.nn.Module):
    """The Bayes-optimal eps-predictor for x0 ~ N(0, s^2 I) under a given schedule."""

    def __init__(self, abar: torch.Tensor, s: float):
        super().__init__()
        self.abar, self.s = abar, s

    def forward(self, x_t, t, class_labels=None):
        a = self.abar[t].reshape(-1, 1)
        return ((1 - a).sqrt() * x_t / (a * self.s**2 + 1 - a)).to(x_t.dtype)


def test_loss_by_timestep_reaches_the_minimum_error_of_the_optimal_predictor():
    abar = schedules.alphas_cumprod(schedules.make_betas("linear", T))
    s = 0.5
    x0 = s * torch.randn(20_000, 4, generator=gen(0), dtype=torch.float64)
    timesteps = torch.tensor([0, 50, 200, 500, 999])
    got = loss_by_timestep(OptimalGaussianEps(abar, s), x0, timesteps, abar, generator=gen(1), batch_size=3000)
    a = abar[timesteps]
    mmse = a * s**2 / (a * s**2 + 1 - a)
    # 80,000 squared errors of variance 2 mmse^2 each: 4 standard errors.
    torch.testing.assert_close(got, mmse, rtol=4 * (2 / 80_000) ** 0.5, atol=1e-12)
    # Predicting eps is hardest at low noise (x_t is almost all signal: error near 1, what guessing 0
    # gives) and easy at high noise (x_t is almost all eps).
    assert bool((got < 1).all()) and got[0] > 0.99 and got[-1] < 0.01


def test_training_with_betas_equals_training_with_the_named_schedule():
    def tiny():
        torch.manual_seed(0)
        return class_conditional_unet(block_out_channels=(8, 16))

    named, _ = train("digits", schedule="sqrt", steps=3, batch_size=8, model=tiny())
    custom, record = train("digits", betas=schedules.make_betas("sqrt", T), steps=3, batch_size=8, model=tiny())
    for p, q in zip(named.parameters(), custom.parameters()):
        assert torch.equal(p, q)
    assert record["schedule"] == "custom" and len(record["trained_betas"]) == T
    torch.testing.assert_close(alphas_cumprod_for(record), schedules.alphas_cumprod(schedules.make_betas("sqrt", T)))
    torch.testing.assert_close(
        torch.from_numpy(ddim_scheduler(record).alphas_cumprod.numpy()).double(),
        alphas_cumprod_for(record),
        rtol=1e-6,
        atol=1e-9,
    )  # diffusers: float32
    with pytest.raises(ValueError, match="betas must be a 1-D tensor"):
        train("digits", betas=torch.tensor([0.5, 1.5]), steps=1)


def test_callback_runs_at_each_log_step_without_gradients_on_the_ema_model():
    calls = []

    def callback(step, model):
        calls.append((step, model.training, torch.is_grad_enabled()))
        return {"step": step}

    torch.manual_seed(0)
    _, record = train("two_moons", steps=5, batch_size=16, log_every=2, callback=callback)
    assert calls == [(2, False, False), (4, False, False), (5, False, False)]
    assert record["history"]["callback"] == [{"step": 2}, {"step": 4}, {"step": 5}]


def test_training_on_an_explicit_device_draws_the_same_batches():
    def tiny():
        torch.manual_seed(0)
        return class_conditional_unet(block_out_channels=(8, 16))

    _, default = train("digits", steps=2, batch_size=8, log_every=1, model=tiny())
    _, on_cpu = train("digits", steps=2, batch_size=8, log_every=1, model=tiny(), device="cpu")
    assert default["history"]["loss"] == on_cpu["history"]["loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_matches_the_cpu_losses():
    def tiny():
        torch.manual_seed(0)
        return class_conditional_unet(block_out_channels=(8, 16))

    _, on_cpu = train("digits", steps=3, batch_size=8, log_every=1, ema=0.0, model=tiny())
    model, on_gpu = train("digits", steps=3, batch_size=8, log_every=1, ema=0.0, model=tiny(), device="cuda")
    assert next(model.parameters()).is_cuda
    # The same draws; the first loss is the same up to kernel round-off, later ones drift a little.
    assert on_gpu["history"]["loss"][0] == pytest.approx(on_cpu["history"]["loss"][0], rel=1e-4)
