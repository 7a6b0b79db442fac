"""Project C's package module: a model's configuration checked against its weights, and the guidance slider.

Oracles: Bayes-optimal networks for Gaussian data (their denoising error is lowest exactly under the
schedule and prediction type they were built for), the training loss of chapter 2
(`training.loss_by_timestep`, in the units of each target), closed-form schedules, and the
committed checkpoints whose true configuration is recorded in training.json["flaw"].
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from diffusion_internals import schedules
from diffusion_internals.course import checkpoints, training
from diffusion_internals.course.data import load_dataset
from diffusion_internals.course.metrics import clipping_fraction
from diffusion_internals.course.models import TimestepMLP
from diffusion_internals.course.production import (
    CANDIDATE_SCHEDULES,
    DEFAULT_LOG_SNRS,
    MAX_GUIDANCE,
    NULL_RATIO_THRESHOLD,
    SamplingConfig,
    diagnose,
    eps_error_by_noise_level,
    slider_config,
    timestep_for,
)
from diffusion_internals.guidance import CFGDenoiser
from diffusion_internals.sampling import sample_by_name

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- an exact network for Gaussian data


class GaussianNet(torch.nn.Module):
    """The Bayes-optimal eps / v / x0 network for x0 ~ N(0, std^2 I) on a given schedule (posterior mean, closed form).

    With class labels, the null label gets the optimal network for the wrong data std (an untrained null label).
    """

    def __init__(
        self, alphas_cumprod: torch.Tensor, prediction_type: str, *, std: float = 0.5, conditional: bool = False
    ) -> None:
        super().__init__()
        self.abar, self.prediction_type, self.std = alphas_cumprod.double(), prediction_type, std
        if conditional:
            self.config = SimpleNamespace(num_class_embeds=11)  # labels 0-9 and the null label 10

    def forward(self, x_t, t, class_labels=None):
        a = self.abar[t].reshape(-1, *([1] * (x_t.ndim - 1)))  # (B, 1, ...)
        std = torch.full_like(a, self.std)
        if class_labels is not None:
            std = torch.where((class_labels == 10).reshape(a.shape), 4 * std, std)
        x = x_t.double()
        x0_hat = a.sqrt() * std**2 * x / (a * std**2 + 1 - a)  # E[x0 | x_t] for Gaussian data
        eps_hat = (1 - a).sqrt() * x / (a * std**2 + 1 - a)  # E[eps | x_t]
        out = {"epsilon": eps_hat, "sample": x0_hat, "v_prediction": a.sqrt() * eps_hat - (1 - a).sqrt() * x0_hat}
        return out[self.prediction_type].to(x_t.dtype)


def gaussian_case(schedule: str, prediction_type: str, *, conditional: bool = False):
    abar = schedules.alphas_cumprod(schedules.make_betas(schedule, 1000))
    x0 = 0.5 * torch.randn(512, 2, generator=gen(1))
    labels = torch.arange(10).repeat(52)[:512] if conditional else None
    return GaussianNet(abar, prediction_type, conditional=conditional), x0, labels


@pytest.mark.parametrize(
    "truth",
    [
        ("linear", "epsilon"),
        ("cosine", "v_prediction"),
        ("sqrt", "sample"),
        ("scaled_linear", "epsilon"),
        ("cosine", "epsilon"),
    ],
)
@pytest.mark.parametrize("claim", [("cosine", "epsilon"), ("linear", "v_prediction")])
def test_diagnose_finds_the_schedule_and_prediction_type_an_exact_network_was_built_for(truth, claim):
    net, x0, _ = gaussian_case(*truth)
    config = {"schedule": claim[0], "prediction_type": claim[1], "num_train_timesteps": 1000, "zero_snr": False}
    report = diagnose(net, config, x0, None, generator=gen(0))
    assert (report.trained_schedule, report.trained_prediction_type) == truth, report.errors
    assert (report.claimed_schedule, report.claimed_prediction_type) == claim
    expected = tuple(
        name for name, wrong in (("schedule", truth[0] != claim[0]), ("prediction_type", truth[1] != claim[1])) if wrong
    )
    assert report.findings == expected and report.ok == (not expected)
    assert report.null_label_ratio is None  # an unconditional network
    assert set(report.errors) == {(s, p) for s in CANDIDATE_SCHEDULES for p in ("epsilon", "v_prediction", "sample")}
    assert report.corrected(config)["schedule"] == truth[0] and report.corrected(config)["prediction_type"] == truth[1]


def test_diagnose_flags_an_untrained_null_label_and_not_a_trained_one():
    net, x0, labels = gaussian_case("linear", "epsilon", conditional=True)
    config = {"schedule": "linear", "prediction_type": "epsilon", "num_train_timesteps": 1000, "zero_snr": False}
    report = diagnose(net, config, x0, labels, generator=gen(0))
    assert report.findings == ("label_dropout",) and report.null_label_ratio > NULL_RATIO_THRESHOLD
    net.std = 0.5  # the null label's data std: now "trained", i.e. the same as the conditional network's
    net.forward = lambda x_t, t, class_labels=None: GaussianNet.forward(net, x_t, t, None)
    report = diagnose(net, config, x0, labels, generator=gen(0))
    assert report.findings == () and report.null_label_ratio == pytest.approx(1.0, abs=1e-9)


def test_first_step_snr_is_the_closed_form_at_the_first_leading_and_trailing_timestep():
    net, x0, _ = gaussian_case("linear", "epsilon")
    config = {"schedule": "cosine", "prediction_type": "epsilon", "num_train_timesteps": 1000, "zero_snr": False}
    report = diagnose(net, config, x0, None, generator=gen(0))
    assert report.trained_schedule == "linear"
    linear = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[980]  # Ho et al. 2020
    f = lambda tau: math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731 (Nichol & Dhariwal 2021, eq. 17)
    cosine = f(981 / 1000) / f(0)  # alpha_bar at 0-based t = 980 is alpha_bar((t + 1) / T)
    assert report.first_step_snr_trained == pytest.approx(float(linear / (1 - linear)), rel=1e-12)
    assert report.first_step_snr_claimed == pytest.approx(cosine / (1 - cosine), rel=1e-9)
    zsnr = {**config, "schedule": "linear", "zero_snr": True}
    report = diagnose(net, zsnr, x0[:16], None, log_snrs=torch.tensor([-2.0, 1.0]), sampling_steps=20, generator=gen(0))
    assert report.first_step_snr_claimed == 0.0  # trailing grid: t = 999, where zero terminal SNR means SNR 0


# ----------------------------------------------------------------------------- the measurement against chapter 2's loss


def test_timestep_for_names_each_level_by_the_nearest_log_snr():
    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", 1000))
    assert [timestep_for(float(abar[t]), abar) for t in range(0, 1000, 7)] == list(range(0, 1000, 7))  # own levels
    linear = schedules.alphas_cumprod(schedules.make_betas("linear", 1000))
    for t in (3, 100, 400, 700, 950):  # brute force over the grid in plain Python floats
        target = math.log(float(abar[t]) / (1 - float(abar[t])))
        distance = [abs(math.log(a / (1 - a)) - target) for a in linear.tolist()]
        assert timestep_for(float(abar[t]), linear) == distance.index(min(distance))
    assert timestep_for(1 - 1e-9, linear) == 0 and timestep_for(1e-12, linear) == 999  # beyond the range: the ends
    zsnr = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas("linear", 1000)))
    assert timestep_for(1e-12, zsnr) == 998  # log SNR = -inf at t = 999 is never the nearest finite level
    for bad in (0.0, 1.0, -0.5, float("nan"), True):
        with pytest.raises(ValueError, match="alpha_bar"):
            timestep_for(bad, linear)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_eps_error_at_a_schedules_own_levels_is_the_training_loss_in_eps_units(prediction_type):
    torch.manual_seed(0)
    model = TimestepMLP(dim=2).eval()
    x0 = torch.randn(200, 2, generator=gen(2))
    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", 100))
    timesteps = torch.tensor([0, 13, 50, 98])
    noise = torch.randn(x0.shape, generator=gen(3))  # what loss_by_timestep draws from gen(3)
    got = eps_error_by_noise_level(model, x0, noise, abar[timesteps], abar, prediction_type=prediction_type)
    loss = training.loss_by_timestep(
        model, x0, timesteps, abar.float(), prediction_type=prediction_type, generator=gen(3)
    )
    a = abar[timesteps]
    # eps_hat - eps = sqrt(a) (v_hat - v) = sqrt(a / (1 - a)) (x0 - x0_hat) (Salimans & Ho 2022, Sec. 4)
    factor = {"epsilon": torch.ones_like(a), "v_prediction": a, "sample": a / (1 - a)}[prediction_type]
    torch.testing.assert_close(got, loss * factor, rtol=2e-5, atol=1e-9)
    assert got.dtype == torch.float64 and got.shape == (4,)


def test_comparing_at_one_timestep_instead_of_one_noise_level_can_blame_the_wrong_schedule():
    # Why diagnose compares at fixed noise levels: at a fixed *timestep* each schedule shows the network a different
    # noise level, and the exact linear network is then more accurate on the sqrt schedule's (easier) inputs.
    net, x0, _ = gaussian_case("linear", "epsilon")
    timesteps, noise = torch.linspace(0, 999, 10).round().long(), torch.randn(x0.shape, generator=gen(0))
    per_timestep = {
        name: float(
            training.loss_by_timestep(
                net, x0, timesteps, schedules.alphas_cumprod(schedules.make_betas(name, 1000)).float(), generator=gen(0)
            ).mean()
        )
        for name in CANDIDATE_SCHEDULES
    }
    per_level = {
        name: float(
            eps_error_by_noise_level(
                net,
                x0,
                noise,
                torch.sigmoid(DEFAULT_LOG_SNRS),
                schedules.alphas_cumprod(schedules.make_betas(name, 1000)),
            ).mean()
        )
        for name in CANDIDATE_SCHEDULES
    }
    assert min(per_timestep, key=per_timestep.get) != "linear", per_timestep
    assert min(per_level, key=per_level.get) == "linear", per_level


def test_an_exact_cosine_network_is_named_cosine_at_fixed_noise_levels_and_not_at_one_timestep():
    # The Bayes-optimal eps network of x0 ~ N(0, d^2 I), d = 0.5, built on the cosine schedule, against the closed
    # form of its error: eps_hat = k x with k = sqrt(1 - a) / (a d^2 + 1 - a) for the alpha_bar a it is told, shown
    # an input at alpha_bar b, has E|eps_hat - eps|^2 = k^2 b d^2 + (k sqrt(1 - b) - 1)^2 per dimension. At fixed
    # noise levels (each candidate names its timestep) the comparison names cosine at every level. At one timestep
    # each candidate shows the network a different level, and the eps-loss floor SNR d^2 / (1 + SNR d^2) rises with
    # the SNR: at t = 200 and t = 600 a schedule with less signal there wins (chapter 7, issue 20).
    d = 0.5
    net, _, _ = gaussian_case("cosine", "epsilon")
    x0 = d * torch.randn(4096, 4, generator=gen(5))
    noise = torch.randn(x0.shape, generator=gen(6))
    abar = {name: schedules.alphas_cumprod(schedules.make_betas(name, 1000)) for name in CANDIDATE_SCHEDULES}
    alpha_bars = torch.sigmoid(DEFAULT_LOG_SNRS)

    def exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        k = (1 - a).sqrt() / (a * d**2 + 1 - a)
        return k**2 * b * d**2 + (k * (1 - b).sqrt() - 1) ** 2

    closed, measured = {}, {}
    for name in CANDIDATE_SCHEDULES:
        told = abar["cosine"][[timestep_for(a, abar[name]) for a in alpha_bars.tolist()]]  # what the network assumes
        closed[name] = exact(told, alpha_bars)
        measured[name] = eps_error_by_noise_level(net, x0, noise, alpha_bars, abar[name])
        torch.testing.assert_close(measured[name], closed[name], rtol=0.05, atol=2e-4)
    levels = torch.stack([closed[name] for name in CANDIDATE_SCHEDULES])  # (4, 9)
    assert (levels.argmin(0) == CANDIDATE_SCHEDULES.index("cosine")).all(), closed
    assert min(measured, key=lambda name: float(measured[name].mean())) == "cosine", measured
    for t in (200, 600):
        same_t = {name: float(exact(abar["cosine"][t], abar[name][t])) for name in CANDIDATE_SCHEDULES}
        loss = {
            name: float(training.loss_by_timestep(net, x0, torch.tensor([t]), abar[name].float(), generator=gen(6))[0])
            for name in CANDIDATE_SCHEDULES
        }
        assert loss == pytest.approx(same_t, rel=0.05), (t, loss, same_t)
        assert min(loss, key=loss.get) != "cosine" and min(same_t, key=same_t.get) != "cosine", (t, loss)


def test_eps_error_and_diagnose_reject_bad_input_with_the_parameter_named():
    model, x0 = TimestepMLP(dim=2).eval(), torch.zeros(4, 2)
    abar = schedules.alphas_cumprod(schedules.make_betas("linear", 10))
    cases = [
        (lambda: eps_error_by_noise_level(model, x0, x0, abar[[1]], abar, prediction_type="eps"), "prediction_type"),
        (lambda: eps_error_by_noise_level(model, x0, x0, torch.tensor([1.0]), abar), "alpha_bars"),
        (lambda: eps_error_by_noise_level(model, x0, x0, torch.tensor([[0.5]]), abar), "alpha_bars"),
        (lambda: eps_error_by_noise_level(model, x0, torch.zeros(4, 3), abar[[1]], abar), "noise"),
        (
            lambda: diagnose(
                model,
                {"schedule": "linear", "prediction_type": "epsilon", "num_train_timesteps": 10},
                x0,
                None,
                log_snrs=torch.tensor([float("nan")]),
            ),
            "log_snrs",
        ),
        (lambda: diagnose(model, {"schedule": "linear", "num_train_timesteps": 10}, x0, None), "prediction_type"),
        (
            lambda: diagnose(
                model,
                {"schedule": "linear", "prediction_type": "epsilon", "num_train_timesteps": 10},
                x0,
                None,
                candidates="linear",
            ),
            "candidates",
        ),
        (
            lambda: diagnose(
                model,
                {"schedule": "linear", "prediction_type": "epsilon", "num_train_timesteps": 10},
                x0,
                None,
                null_ratio_threshold=0.5,
            ),
            "null_ratio_threshold",
        ),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


# ----------------------------------------------------------------------------- the committed models


def committed(name: str, n: int = 24):
    net, config = checkpoints.load_model(name)
    test = load_dataset(config["dataset"], split="test")
    pick = torch.randperm(len(test.labels), generator=gen(0))[:n]
    return net, config, test.images[pick], test.labels[pick]


@pytest.mark.slow  # diagnoses a committed checkpoint: 20-30 s on one thread
def test_diagnose_finds_that_the_client_model_was_trained_linear_as_its_flaw_record_says():
    net, config, x0, labels = committed("colour-digits-client")
    shipped = {k: v for k, v in config.items() if k != "flaw"}
    report = diagnose(net, shipped, x0, labels, generator=gen(0))
    truth = config["flaw"]["actual"]
    assert (report.trained_schedule, report.trained_prediction_type) == (truth["schedule"], truth["prediction_type"])
    assert report.findings == ("schedule",) and report.claimed_schedule == "cosine"
    # The eps error under the truth is several times lower than under the claim (0.023 against 0.10 on 32 images).
    assert report.errors[("linear", "epsilon")] * 3 < report.errors[("cosine", "epsilon")], report.errors
    assert report.null_label_ratio < NULL_RATIO_THRESHOLD  # trained with label dropout 0.1
    assert diagnose(net, report.corrected(shipped), x0, labels, generator=gen(0)).ok


@pytest.mark.slow  # diagnoses three committed checkpoints: 10-20 s on one thread
def test_diagnose_flags_the_model_trained_without_label_dropout_and_passes_honest_ones():
    for name, findings in (
        ("digits-cosine-eps-no-dropout", ("label_dropout",)),
        ("digits-linear-v-zsnr", ()),
        ("colour-digits-cosine-eps", ()),
    ):
        net, config, x0, labels = committed(name, n=16)
        report = diagnose(net, config, x0, labels, generator=gen(0))
        assert report.findings == findings, (name, report.null_label_ratio, report.errors)


# ----------------------------------------------------------------------------- the slider


@pytest.mark.parametrize(
    "guidance_scale, rescale, threshold",
    [(0, 0.0, None), (0.5, 0.0, None), (1, 0.0, None), (4.0, 0.25, 0.995), (7, 0.5, 0.995), (2.2, 0.1, 0.995)],
)
def test_slider_config_on_known_inputs(guidance_scale, rescale, threshold):
    config = slider_config(guidance_scale)
    assert isinstance(config, SamplingConfig) and type(config.guidance_scale) is float
    assert config.guidance_scale == guidance_scale
    assert config.rescale == pytest.approx(rescale, abs=1e-12) and config.threshold == threshold
    assert (config.threshold_max_value, config.name, config.steps) == (1.5, "DPM++ 2M Karras", 20)


def test_slider_fixes_grow_with_the_scale_and_stop_at_the_cap():
    grid = [MAX_GUIDANCE * i / 70 for i in range(71)]
    rescales = [slider_config(s).rescale for s in grid]
    assert all(b >= a for a, b in zip(rescales, rescales[1:])) and rescales[-1] == 0.5 and max(rescales) == 0.5


@pytest.mark.parametrize("bad", [-1e-9, -3, 7.000001, 8, 1e9, float("nan"), float("inf"), True, "5", None, [3.0]])
def test_slider_rejects_scales_off_the_slider_rather_than_clamping(bad):
    with pytest.raises(ValueError, match="guidance_scale must") as error:
        slider_config(bad)
    assert f"{MAX_GUIDANCE}" in str(error.value) and "[0, " in str(error.value)


def test_slider_rejects_unknown_sampler_names_and_bad_step_counts():
    with pytest.raises(ValueError, match=r"name must be one of .*'DPM\+\+ 2M Karras'.*got 'DPM\+\+ 9M'"):
        slider_config(3.0, name="DPM++ 9M")
    with pytest.raises(ValueError, match="name must be one of"):
        slider_config(3.0, name="dpmpp_2m")  # a key of sampling.SAMPLERS is not a UI name
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        slider_config(3.0, steps=0)
    assert slider_config(3.0, name="DDIM", steps=50).name == "DDIM"


def test_slider_config_guides_with_its_fixes_and_tames_clipping_on_the_client_model():
    config = slider_config(7)
    net, record = checkpoints.load_model("colour-digits-client")
    true = {**record, **record["flaw"]["actual"]}
    from diffusion_internals.denoisers import DiscreteDenoiser

    denoiser = DiscreteDenoiser(net, checkpoints.alphas_cumprod_for(true))
    null = {"class_labels": torch.tensor([10])}
    guided = config.guided(denoiser, null)
    assert isinstance(guided, CFGDenoiser)
    assert (guided.guidance_scale, guided.rescale) == (7.0, 0.5)
    assert (guided.threshold, guided.threshold_max_value) == (0.995, 1.5)
    labels = torch.arange(10).repeat(2)

    def draw(d):
        return sample_by_name(
            d, (20, 3, 16, 16), "DPM++ 2M Karras", steps=8, generator=gen(0), extra_args={"class_labels": labels}
        )

    plain = CFGDenoiser(denoiser, 7.0, uncond=null)
    # Package numbers (training.json): plain CFG 7 clips 11% of values, the test split none.
    assert clipping_fraction(draw(guided)) < 0.02 < 0.05 < clipping_fraction(draw(plain))
