"""The training loss, the loss per timestep, the trainer's custom schedules and callbacks; flow and EDM objectives.

Oracles: diffusers' DDPMScheduler (add_noise, get_velocity) and the minimum mean squared error of
eps-prediction for Gaussian data, which a network cannot beat: for x0 ~ N(0, s^2 I) the best eps-predictor is linear,
E[eps | x_t] = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar), and its error per dimension is
abar s^2 / (abar s^2 + 1 - abar). For the other objectives: diffusers' FlowMatchEulerDiscreteScheduler (scale_noise,
the timestep sigma * 1000) and the velocity target of its SD3 training script, noise - x0; diffusers'
EDMEulerScheduler (c_in, c_noise and c_skip x + c_out F); and Table 1 of Karras et al. (2022) written out here.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, EDMEulerScheduler, FlowMatchEulerDiscreteScheduler

from diffusion_internals import schedules
from diffusion_internals.course import data, training
from diffusion_internals.course.__main__ import main as train_main
from diffusion_internals.course.checkpoints import alphas_cumprod_for, ddim_scheduler
from diffusion_internals.course.models import TimestepMLP, class_conditional_unet
from diffusion_internals.course.training import diffusion_loss, draw_levels, loss_by_timestep, train, training_loss

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


@pytest.mark.gpu
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


# ----------------------------------------------------------------------------- flow matching and EDM


def test_flow_loss_is_the_velocity_mse_of_diffusers_flow_matching():
    # diffusers' training grid: t = sigma = k / 1000, timestep = 1000 sigma; scale_noise is its x_t.
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=1.0)
    index = torch.tensor([0, 1, 300, 700, 998, 999])
    timesteps, t = scheduler.timesteps[index], scheduler.sigmas[index].double()  # (6,), t from 1 down to 0.001
    x0 = torch.randn(6, 1, 4, 4, generator=gen(0))
    eps = torch.randn(6, 1, 4, 4, generator=gen(1))
    model = Recorder()
    got = training_loss(model, x0, eps, t, objective="flow", class_labels=index % 10)

    x_t = scheduler.scale_noise(x0, timesteps, eps)  # sigma eps + (1 - sigma) x0
    expected = (model(x_t, timesteps) - (eps - x0)).pow(2).mean((1, 2, 3))  # SD3's target: noise - x0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.seen[0], x_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.seen[1], timesteps, rtol=1e-6, atol=1e-4)


def test_edm_loss_regresses_f_on_the_target_that_makes_diffusers_edm_denoiser_exact():
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, prediction_type="epsilon")
    sigma = torch.tensor([0.002, 0.05, 0.5, 1.0, 10.0, 80.0], dtype=torch.float64)
    x0 = torch.randn(6, 1, 4, 4, generator=gen(0), dtype=torch.float64)
    eps = torch.randn(6, 1, 4, 4, generator=gen(1), dtype=torch.float64)
    model = Recorder()
    got = training_loss(model, x0, eps, sigma, objective="edm", class_labels=torch.arange(6))

    s = sigma.reshape(-1, 1, 1, 1)
    x = x0 + s * eps
    x_in, c_noise = scheduler.precondition_inputs(x, s), scheduler.precondition_noise(sigma)  # c_in x, ln(sigma) / 4
    torch.testing.assert_close(model.seen[0], x_in, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.seen[1], c_noise, rtol=1e-12, atol=1e-12)
    # The target is the F for which diffusers' D = c_skip x + c_out F is x0 exactly.
    c_skip, c_out = 0.25 / (s**2 + 0.25), 0.5 * s / (s**2 + 0.25).sqrt()
    target = (x0 - c_skip * x) / c_out
    torch.testing.assert_close(scheduler.precondition_outputs(x, target, s), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got, (model(x_in, c_noise) - target).pow(2).mean((1, 2, 3)), rtol=1e-9, atol=1e-9)


def tiny_unet():
    torch.manual_seed(0)  # the same initial weights every time
    return class_conditional_unet(block_out_channels=(8, 16))


def first_draws(seed: int, batch_size: int):
    """The trainer's first batch, redrawn by hand: image indices, label dropout (p = 0.1), then the noise level."""
    train_set = data.load_dataset("digits", split="train")
    g = gen(seed)
    index = torch.randint(0, len(train_set.labels), (batch_size,), generator=g)
    x0, labels = train_set.images[index], train_set.labels[index]
    labels = torch.where(torch.rand(batch_size, generator=g) < 0.1, 10, labels)
    u = torch.randn(batch_size, generator=g, dtype=torch.float64)  # flow: logit(t); EDM: (ln(sigma) - P_mean) / P_std
    eps = torch.randn(x0.shape, generator=g)
    return x0.double(), labels, u, eps.double()


@pytest.mark.parametrize("objective", ["flow", "edm"])
def test_first_logged_loss_is_the_objective_written_out_from_the_papers(objective):
    # Esser et al. 2024 (Sec. 3.1, logit-normal(0, 1); eq. 3 path, velocity eps - x0) and Karras et al. 2022
    # (Table 1: ln(sigma) ~ N(-1.2, 1.2^2), c_in, c_noise, c_skip, c_out with sigma_data = 0.5; eq. 8 target).
    model = tiny_unet()
    x0, labels, u, eps = first_draws(seed=3, batch_size=8)
    with torch.no_grad():
        if objective == "flow":
            t = (1 / (1 + torch.exp(-u))).reshape(-1, 1, 1, 1)
            x_in, timestep, target = (1 - t) * x0 + t * eps, 1000 * t.reshape(-1), eps - x0
        else:
            sigma = torch.exp(-1.2 + 1.2 * u).reshape(-1, 1, 1, 1)
            norm = torch.sqrt(sigma**2 + 0.5**2)
            c_in, c_skip, c_out = 1 / norm, 0.5**2 / norm**2, sigma * 0.5 / norm
            x_in, timestep = c_in * (x0 + sigma * eps), torch.log(sigma.reshape(-1)) / 4
            target = (x0 - c_skip * (x0 + sigma * eps)) / c_out
        output = model(x_in.float(), timestep.float(), class_labels=labels).sample.double()
        expected = float((output - target).pow(2).mean())
    _, record = train("digits", objective=objective, steps=1, batch_size=8, seed=3, ema=0.0, log_every=1, model=model)
    assert record["history"]["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert record["objective"] == objective and "prediction_type" not in record and "schedule" not in record
    if objective == "edm":
        assert (record["sigma_data"], record["p_mean"], record["p_std"]) == (0.5, -1.2, 1.2)
        assert record["metrics"]["data_std"] == pytest.approx(
            float(data.digits("train").images.double().std()), abs=1e-4
        )


@pytest.mark.parametrize("objective", ["flow", "edm"])
def test_training_levels_follow_the_papers_distributions(objective):
    levels = draw_levels(objective, 200_000, generator=gen(0))
    normal = torch.logit(levels) if objective == "flow" else (torch.log(levels) + 1.2) / 1.2  # both N(0, 1)
    assert abs(float(normal.mean())) < 0.01 and abs(float(normal.std()) - 1) < 0.01  # 4.5 and 3 standard errors
    assert float(levels.min()) > 0 and (objective == "edm" or float(levels.max()) < 1)


@pytest.mark.parametrize("objective", ["flow", "edm"])
def test_a_tiny_run_of_each_objective_learns_a_2d_toy(objective):
    torch.manual_seed(0)
    _, record = train(
        "eight_gaussians",
        objective=objective,
        steps=400,
        batch_size=256,
        lr=3e-3,
        ema=0.0,
        log_every=10,
        model=TimestepMLP(hidden=64, depth=2),
    )
    losses = record["history"]["loss"]  # each the mean over 10 steps
    assert sum(losses[-5:]) / 5 < 0.75 * losses[0], losses
    buckets = {"flow": "10 equal ranges of t in [0, 1]", "edm": "10 equal ranges of ln(sigma) in [-4.8, 2.4]"}
    assert record["metrics"]["buckets"].startswith(buckets[objective])
    assert len(record["metrics"]["train_loss_by_bucket"]) == 10


@pytest.mark.parametrize("objective", ["flow", "edm"])
def test_loss_buckets_are_the_stated_ranges_of_the_level(objective, monkeypatch):
    # A stand-in loss equal to the level's own coordinate (t, or ln(sigma)): each bucket's mean "loss" is then the
    # mean coordinate of the levels it holds, which must lie in the bucket's stated range.
    def coordinate(model, x0, eps, level, **kwargs):
        anchor = sum(p.sum() for p in model.parameters()) * 0  # keeps backward() working
        return (level if objective == "flow" else level.log()).float() + anchor

    monkeypatch.setattr(training, "training_loss", coordinate)
    _, record = train("two_moons", objective=objective, steps=20, batch_size=256, ema=0.0, log_every=20)
    low, high = (0.0, 1.0) if objective == "flow" else (-1.2 - 3 * 1.2, -1.2 + 3 * 1.2)
    width = (high - low) / 10
    for k, mean in enumerate(record["metrics"]["train_loss_by_bucket"]):
        open_below = k == 0 and objective == "edm"  # the end buckets of EDM also hold the levels beyond the range
        open_above = k == 9 and objective == "edm"
        assert (open_below or low + k * width <= mean) and (open_above or mean < low + (k + 1) * width), (k, mean)


def test_flow_and_edm_refuse_the_options_of_a_beta_schedule():
    with pytest.raises(ValueError, match=r"^prediction_type, betas only apply to objective='diffusion'"):
        train("digits", objective="flow", prediction_type="v", betas=schedules.make_betas("linear", T))
    with pytest.raises(ValueError, match=r"^schedule, zero_snr only apply to objective='diffusion'.*schedule='linear'"):
        train("digits", objective="edm", schedule="linear", zero_snr=True)
    with pytest.raises(ValueError, match=r"^objective must be one of \['diffusion', 'flow', 'edm'\], got 'score'"):
        train("digits", objective="score")
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="alphas_cumprod and prediction_type belong to objective='diffusion'"):
        training_loss(Recorder(), x0, x0, torch.tensor([0.5, 0.5]), objective="flow", alphas_cumprod=torch.ones(T))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        training_loss(Recorder(), x0, x0, torch.tensor([0.5, 1.5]), objective="flow")


@pytest.mark.parametrize(
    ("extra", "named"),
    [(["--prediction", "v"], "--prediction"), (["--zero-snr", "--schedule", "linear"], "--schedule, --zero-snr")],
)
def test_cli_refuses_beta_schedule_options_with_flow_or_edm(extra, named, tmp_path, capsys):
    for objective in ("flow", "edm"):
        with pytest.raises(SystemExit) as exit_info:
            train_main(["--dataset", "digits", "--objective", objective, *extra, "--out", str(tmp_path / "x")])
        assert exit_info.value.code == 2
        assert f"error: {named} only apply to --objective diffusion" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
