"""Denoisers against independent oracles: quadrature, autograd Tweedie, solve_ivp, k-diffusion, diffusers UNets."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from scipy.integrate import solve_ivp
from support import model_from_denoiser

from diffusion_internals.course import kdiffusion
from diffusion_internals.denoisers import (
    DiscreteDenoiser,
    GaussianDenoiser,
    GaussianMixtureDenoiser,
    gaussian_ode_solution,
)
from diffusion_internals.schedules import alphas_cumprod, make_betas, rescale_zero_terminal_snr

K_EXTERNAL = kdiffusion.import_external()
AC = alphas_cumprod(make_betas("linear", 1000))  # float64, sigma_min ~ 0.01, sigma_max ~ 157
AC_ZSNR = alphas_cumprod(rescale_zero_terminal_snr(make_betas("scaled_linear", 1000)))  # last entry 0
SIGMAS = ((1 - AC) / AC).sqrt()
TIGHT = dict(rtol=1e-12, atol=1e-12)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture_1d() -> GaussianMixtureDenoiser:
    return GaussianMixtureDenoiser(
        torch.tensor([[-2.0], [0.5], [3.0]]), torch.tensor([0.3, 0.8, 0.5]), torch.tensor([0.2, 0.5, 0.3])
    )


def mixture_nd() -> GaussianMixtureDenoiser:
    means = torch.randn(3, 2, 3, generator=gen(1), dtype=torch.float64) * 2  # (K, 2, 3)
    return GaussianMixtureDenoiser(means, torch.tensor([0.4, 1.0, 0.7]), torch.tensor([0.5, 0.25, 0.25]))


def toy_net(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth network whose output depends on x_in and on fractional t."""
    t = t.to(torch.float64).reshape((-1,) + (1,) * (x_in.ndim - 1))  # (B,) -> (B, 1, ..., 1)
    return torch.tanh(x_in) * (1 + t / 1000) + torch.sin(t / 50)


def tweedie(log_density: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x0 | x] = x + sigma^2 grad log p_sigma(x) (Tweedie's formula; Efron 2011), by autograd."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_density(x).sum(), x)
    return (x + sigma**2 * grad).detach()


# ----------------------------------------------------------------------------- exact Gaussian denoiser


@pytest.mark.parametrize("std", [0.7, torch.tensor([0.3, 1.0, 2.5])])
def test_gaussian_denoiser_is_tweedie(std: float | torch.Tensor) -> None:
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    denoiser = GaussianDenoiser(mean, std)
    x = torch.randn(4, 3, generator=gen(0), dtype=torch.float64) * 3
    sigmas = [0.0, 0.05, 1.3, 40.0]
    batched = denoiser(x, torch.tensor(sigmas, dtype=torch.float64))
    for i, sigma in enumerate(sigmas):
        if sigma == 0:
            expected = x[i : i + 1]  # no noise: D is the identity
        else:
            variance = torch.as_tensor(std, dtype=torch.float64) ** 2 + sigma**2
            noised = torch.distributions.Normal(mean, variance.sqrt())
            expected = tweedie(lambda y, noised=noised: noised.log_prob(y).sum(-1), x[i : i + 1], sigma)
        torch.testing.assert_close(denoiser(x[i : i + 1], sigma), expected, **TIGHT)
        torch.testing.assert_close(batched[i : i + 1], expected, **TIGHT)


def test_gaussian_denoiser_is_conditional_mean_monte_carlo() -> None:
    # E[x0 | x] is the function whose residual x0 - D(x) is uncorrelated with every function of x.
    denoiser = GaussianDenoiser(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0]))
    n, sigma = 200_000, 0.8
    x0 = denoiser.sample(n, generator=gen(2))
    assert x0.shape == (n, 2) and x0.dtype == torch.float64
    torch.testing.assert_close(x0.mean(0), denoiser.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(x0.std(0), denoiser.std, atol=0.02, rtol=0)
    x = x0 + sigma * torch.randn(x0.shape, generator=gen(3), dtype=torch.float64)
    residual = x0 - denoiser(x, sigma)
    for g in (torch.ones_like(x), x, x**3):
        moment = residual * g
        standard_error = moment.std(0) / math.sqrt(n)
        assert bool((moment.mean(0).abs() < 5 * standard_error).all()), (moment.mean(0), standard_error)


# ----------------------------------------------------------------------------- exact mixture denoiser


def test_mixture_posterior_mean_matches_quadrature() -> None:
    denoiser = mixture_1d()
    x0 = np.linspace(-12, 12, 480_001)
    prior = sum(
        w * np.exp(-0.5 * ((x0 - m) / s) ** 2) / s
        for m, s, w in zip(denoiser.means[:, 0].tolist(), denoiser.stds.tolist(), denoiser.weights.tolist())
    )
    xs = torch.tensor([[-3.0], [-0.7], [0.4], [2.5], [6.0]], dtype=torch.float64)  # (B, 1)
    for sigma in (0.05, 0.3, 1.0, 4.0, 25.0):
        got = denoiser(xs, sigma)[:, 0].numpy()
        for x, value in zip(xs[:, 0].tolist(), got):
            joint = prior * np.exp(-0.5 * ((x - x0) / sigma) ** 2)  # p(x0) N(x; x0, sigma^2) up to constants
            expected = np.trapezoid(x0 * joint, x0) / np.trapezoid(joint, x0)
            assert value == pytest.approx(expected, rel=1e-8, abs=1e-9), (x, sigma)


def test_mixture_denoiser_is_tweedie_of_noised_density() -> None:
    denoiser = mixture_nd()
    x = torch.randn(5, 2, 3, generator=gen(4), dtype=torch.float64) * 3
    x[4] = 40.0  # far from every component: the responsibilities need logsumexp
    sigmas = torch.tensor([0.01, 0.2, 1.0, 3.0, 0.05], dtype=torch.float64)
    batched = denoiser(x, sigmas)
    for i, sigma in enumerate(sigmas.tolist()):
        scale = torch.sqrt(denoiser.stds**2 + sigma**2).reshape(3, 1, 1).expand(3, 2, 3)  # (K, 2, 3)
        noised = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=denoiser.weights),
            torch.distributions.Independent(torch.distributions.Normal(denoiser.means, scale), 2),
        )
        expected = tweedie(noised.log_prob, x[i : i + 1], sigma)
        torch.testing.assert_close(batched[i : i + 1], expected, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(batched).all()


def test_mixture_far_from_data_picks_nearest_component_stably() -> None:
    denoiser = mixture_1d()
    x = torch.tensor([[1e3], [-1e3]], dtype=torch.float64)
    got = denoiser(x, 0.01)
    assert torch.isfinite(got).all()
    for i in range(2):  # the widest component (std 0.8) has the heaviest tail on both sides
        torch.testing.assert_close(got[i : i + 1], denoiser.component(1)(x[i : i + 1], 0.01), **TIGHT)


def test_mixture_class_labels_restrict_to_one_component() -> None:
    denoiser = mixture_nd()
    x = torch.randn(4, 2, 3, generator=gen(5), dtype=torch.float64) * 2
    sigma = torch.tensor([0.3, 1.0, 2.0, 0.7], dtype=torch.float64)
    labels = torch.tensor([0, 2, -1, 1])
    got = denoiser(x, sigma, class_labels=labels)
    unconditional = denoiser(x, sigma)
    torch.testing.assert_close(denoiser(x, sigma, class_labels=torch.full((4,), -1)), unconditional, **TIGHT)
    for i, k in enumerate(labels.tolist()):
        expected = (
            unconditional[i]
            if k < 0
            else GaussianDenoiser(denoiser.means[k], denoiser.stds[k])(x[i : i + 1], sigma[i])[0]
        )
        torch.testing.assert_close(got[i], expected, **TIGHT)
    assert not torch.allclose(got[0], unconditional[0])


def test_mixture_sample_matches_weights_and_components() -> None:
    denoiser = mixture_nd()
    n = 100_000
    x0, labels = denoiser.sample(n, generator=gen(6), dtype=torch.float32)
    assert x0.shape == (n, 2, 3) and x0.dtype == torch.float32 and labels.shape == (n,)
    frequencies = torch.bincount(labels, minlength=3).double() / n
    torch.testing.assert_close(frequencies, denoiser.weights, atol=5 * math.sqrt(0.25 / n), rtol=0)
    for k in range(3):
        members = x0[labels == k].double()
        torch.testing.assert_close(members.mean(0), denoiser.means[k], atol=0.03, rtol=0)
        assert (members - denoiser.means[k]).std() == pytest.approx(denoiser.stds[k].item(), rel=0.02)


# ----------------------------------------------------------------------------- exact probability-flow ODE


@pytest.mark.parametrize(("sigma_from", "sigma_to"), [(20.0, 0.01), (0.1, 5.0), (2.0, 0.0)])
def test_gaussian_ode_solution_matches_solve_ivp(sigma_from: float, sigma_to: float) -> None:
    mean, std = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.0, 1.7])
    x = torch.randn(1, 3, generator=gen(7), dtype=torch.float64) * math.sqrt(1 + sigma_from**2)

    def rhs(sigma: float, y: np.ndarray) -> np.ndarray:  # dx/dsigma = (x - D(x, sigma)) / sigma, eq. 3 of Karras
        if sigma == 0:
            return np.zeros_like(y)  # the limit: x - D = sigma^2 (x - mean) / (std^2 + sigma^2)
        denoised = mean + std**2 / (std**2 + sigma**2) * (y - mean)
        return (y - denoised) / sigma

    solution = solve_ivp(rhs, (sigma_from, sigma_to), x[0].numpy(), method="DOP853", rtol=1e-12, atol=1e-12)
    expected = torch.from_numpy(solution.y[:, -1]).reshape(1, 3)
    got = gaussian_ode_solution(x, sigma_from, sigma_to, torch.from_numpy(mean), torch.from_numpy(std))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_gaussian_ode_solution_batched_sigmas_and_dtype() -> None:
    x = torch.randn(3, 2, 2, generator=gen(8))  # float32, event (2, 2) with a scalar mean and std
    sigma_from, sigma_to = torch.tensor([5.0, 1.0, 0.5]), torch.tensor([0.0, 2.0, 0.5])
    got = gaussian_ode_solution(x, sigma_from, sigma_to, 0.25, 1.5)
    assert got.dtype == torch.float32 and got.shape == x.shape
    for i in range(3):
        row = gaussian_ode_solution(x[i : i + 1], float(sigma_from[i]), float(sigma_to[i]), 0.25, 1.5)
        torch.testing.assert_close(got[i : i + 1], row)
    torch.testing.assert_close(got[2], x[2])  # sigma_from == sigma_to: the identity


# ----------------------------------------------------------------------------- discrete-time networks


@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_discrete_denoiser_matches_k_diffusion(prediction_type: str, quantize: bool) -> None:
    oracle_class = {"epsilon": K_EXTERNAL.DiscreteEpsDDPMDenoiser, "v_prediction": K_EXTERNAL.DiscreteVDDPMDenoiser}
    oracle = oracle_class[prediction_type](toy_net, AC, quantize=quantize)
    denoiser = DiscreteDenoiser(toy_net, AC, prediction_type=prediction_type, quantize=quantize)
    between = math.sqrt(SIGMAS[400] * SIGMAS[401])  # halfway in log sigma
    sigma = torch.tensor(
        [SIGMAS[0], SIGMAS[137], SIGMAS[-1], between, 0.7, 3.3, 40.0, 1e-3, 300.0], dtype=torch.float64
    )  # on, between and outside the training sigmas
    x = torch.randn(len(sigma), 2, 3, generator=gen(9), dtype=torch.float64) * (1 + sigma.reshape(-1, 1, 1))
    torch.testing.assert_close(denoiser(x, sigma), oracle(x, sigma), **TIGHT)
    torch.testing.assert_close(denoiser.sigma_to_t(sigma), oracle.sigma_to_t(sigma), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("schedule", [AC, AC_ZSNR], ids=["linear", "zero_terminal_snr"])
@pytest.mark.parametrize("quantize", [False, True])
def test_sigma_to_t_and_t_to_sigma_match_k_diffusion(schedule: torch.Tensor, quantize: bool) -> None:
    oracle = K_EXTERNAL.DiscreteSchedule(((1 - schedule) / schedule).sqrt(), quantize)
    denoiser = DiscreteDenoiser(toy_net, schedule, quantize=quantize)
    sigmas = denoiser.sigmas[torch.isfinite(denoiser.sigmas)]
    sigma = torch.cat([torch.logspace(-3, 3, 97, dtype=torch.float64), sigmas[::37], sigmas[-1:]])
    torch.testing.assert_close(denoiser.sigma_to_t(sigma), oracle.sigma_to_t(sigma), rtol=1e-12, atol=1e-9)
    t = torch.tensor([0.0, 0.5, 17.25, 523.375, 997.875, 998.0, 999.0])  # exact in k-diffusion's float32
    got, expected = denoiser.t_to_sigma(t.double()), oracle.t_to_sigma(t)
    finite = torch.isfinite(got)  # k-diffusion gives nan (0 * inf) at sigma = inf; we give inf
    assert finite[:-1].all() and bool(finite[-1]) == bool(schedule[-1] > 0)
    torch.testing.assert_close(got[finite], expected[finite], **TIGHT)


def test_sigma_t_round_trips() -> None:
    denoiser = DiscreteDenoiser(toy_net, AC)
    t = torch.linspace(0, 999, 1234, dtype=torch.float64)
    torch.testing.assert_close(denoiser.sigma_to_t(denoiser.t_to_sigma(t)), t, rtol=1e-12, atol=1e-9)
    sigma = torch.logspace(math.log10(denoiser.sigma_min), math.log10(denoiser.sigma_max), 500, dtype=torch.float64)
    torch.testing.assert_close(denoiser.t_to_sigma(denoiser.sigma_to_t(sigma)), sigma, **TIGHT)
    torch.testing.assert_close(denoiser.t_to_sigma(torch.arange(1000)), SIGMAS, **TIGHT)
    quantized = DiscreteDenoiser(toy_net, AC, quantize=True)
    assert torch.equal(quantized.sigma_to_t(SIGMAS), torch.arange(1000))
    assert quantized.sigma_to_t(SIGMAS).dtype == torch.long
    assert denoiser.sigma_min == pytest.approx(SIGMAS[0].item(), rel=1e-15)
    assert denoiser.sigma_max == pytest.approx(SIGMAS[-1].item(), rel=1e-15)


def test_zero_terminal_snr_schedule() -> None:
    denoiser = DiscreteDenoiser(toy_net, AC_ZSNR)
    assert denoiser.sigma_max == math.inf and denoiser.sigmas[-1] == math.inf
    assert denoiser.t_to_sigma(999.0) == math.inf and denoiser.t_to_sigma(998.5) == math.inf
    assert denoiser.sigma_to_t(math.inf) == 999
    assert denoiser.sigma_to_t(1e6) == 998  # log-sigma interpolation collapses on the infinite last interval
    x = torch.randn(2, 2, 3, generator=gen(10), dtype=torch.float64)
    assert torch.isfinite(denoiser(x, 50.0)).all()
    with pytest.raises(ValueError, match="sigma"):
        denoiser(x, math.inf)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_discrete_denoiser_reproduces_exact_denoiser_at_training_sigmas(prediction_type: str) -> None:
    exact = mixture_nd()
    denoiser = DiscreteDenoiser(
        model_from_denoiser(exact, AC, prediction_type=prediction_type), AC, prediction_type=prediction_type
    )
    steps = torch.tensor([0, 1, 250, 611, 998, 999])
    sigma = SIGMAS[steps]
    x = torch.randn(len(steps), 2, 3, generator=gen(11), dtype=torch.float64) * (1 + sigma.reshape(-1, 1, 1))
    labels = torch.tensor([0, -1, 2, 1, -1, 0])
    torch.testing.assert_close(denoiser(x, sigma), exact(x, sigma), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        denoiser(x, sigma, class_labels=labels), exact(x, sigma, class_labels=labels), rtol=1e-10, atol=1e-10
    )
    for i in (0, 3):  # a python-float sigma broadcast over the batch
        torch.testing.assert_close(denoiser(x, sigma[i].item()), exact(x, sigma[i].item()), rtol=1e-10, atol=1e-10)


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ).eval()


@pytest.mark.parametrize("quantize", [False, True])
@torch.no_grad()
def test_wraps_diffusers_unet2d(quantize: bool) -> None:
    unet = tiny_unet()
    steps = torch.tensor([10, 500])
    sigma = SIGMAS[steps]  # on the training grid, so t is known: 10 and 500
    x = torch.randn(2, 1, 8, 8, generator=gen(12)) * (1 + sigma.float().reshape(-1, 1, 1, 1))  # float32
    got = DiscreteDenoiser(unet, AC, quantize=quantize)(x, sigma)
    assert got.shape == x.shape and got.dtype == torch.float32
    s = sigma.float().reshape(-1, 1, 1, 1)
    expected = x - s * unet(x / torch.sqrt(1 + s**2), steps).sample
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The network is fed the dtype it is built with: a float64 UNet on float32 x still returns float32.
    unet64 = tiny_unet().double()
    got64 = DiscreteDenoiser(unet64, AC, quantize=quantize, dtype=torch.float64)(x, sigma)
    assert got64.dtype == torch.float32
    s64 = sigma.reshape(-1, 1, 1, 1)
    expected64 = x.double() - s64 * unet64(x.double() / torch.sqrt(1 + s64**2), steps.double()).sample
    torch.testing.assert_close(got64, expected64.float())


@torch.no_grad()
def test_wraps_diffusers_unet2d_condition_v_prediction() -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8,
        cross_attention_dim=8,
        attention_head_dim=4,
    ).eval()
    x = torch.randn(2, 1, 8, 8, generator=gen(13)) * 3
    context = torch.randn(2, 3, 8, generator=gen(14))  # (B, tokens, cross_attention_dim)
    sigma = float(SIGMAS[700])
    got = DiscreteDenoiser(unet, AC, prediction_type="v_prediction")(x, sigma, encoder_hidden_states=context)
    assert got.shape == x.shape and got.dtype == torch.float32
    v = unet(x / math.sqrt(1 + sigma**2), torch.tensor([700, 700]), encoder_hidden_states=context).sample
    expected = x / (sigma**2 + 1) - v * sigma / math.sqrt(sigma**2 + 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("quantize", "x_dtype", "t_dtype"),
    [
        (False, torch.float32, torch.float32),
        (False, torch.float64, torch.float64),
        (True, torch.float32, torch.long),
        (True, torch.float64, torch.long),
    ],
)
def test_model_receives_x_in_and_t_of_shape_b(quantize: bool, x_dtype: torch.dtype, t_dtype: torch.dtype) -> None:
    seen: dict[str, torch.Tensor] = {}

    def recording_net(x_in: torch.Tensor, t: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        seen.update(x_in=x_in, t=t, **cond)
        return torch.zeros_like(x_in)

    x = torch.randn(3, 2, 2, generator=gen(16), dtype=x_dtype)
    label = torch.tensor([1, 2, 3])
    got = DiscreteDenoiser(recording_net, AC, quantize=quantize)(x, float(SIGMAS[321]), class_labels=label)
    assert seen["t"].shape == (3,) and seen["t"].dtype == t_dtype and bool((seen["t"] == 321).all())
    assert seen["x_in"].dtype == x_dtype and seen["class_labels"] is label
    torch.testing.assert_close(seen["x_in"], x / math.sqrt(1 + SIGMAS[321].item() ** 2))
    torch.testing.assert_close(got, x)  # eps = 0: x0_hat = x


class HalfNet(torch.nn.Module):
    """A float16 'network' that records the dtype it is fed and predicts eps = x_in / 4 in that dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1, dtype=torch.float16))  # what parameter sniffing would see
        self.fed: list[torch.dtype] = []

    def forward(self, x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.fed.append(x_in.dtype)
        return x_in / 4


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wrap", ["module", "lambda"])
def test_the_network_is_fed_dtype_if_given_else_the_dtype_of_x(wrap: str, x_dtype: torch.dtype) -> None:
    net = HalfNet()
    model = net if wrap == "module" else (lambda x_in, t: net(x_in, t))
    x = torch.randn(3, 2, 4, generator=gen(17), dtype=x_dtype) * 5
    sigma = 2.0
    # x0_hat = x - sigma eps with eps = (x / sqrt(1 + sigma^2)) / 4, in float64 (Karras et al. 2022, Table 1)
    expected = x.double() - sigma * (x.double() / math.sqrt(1 + sigma**2)) / 4
    for dtype, fed, tol in ((torch.float16, torch.float16, 1e-2), (None, x_dtype, 1e-6)):
        if wrap == "module" and dtype is None:  # a module declares its weights' dtype: feeding x's is an error
            with pytest.raises(
                ValueError, match=r"weights are torch.float16 but it would be fed .*dtype=torch.float16"
            ):
                DiscreteDenoiser(model, AC, dtype=dtype)(x, sigma)
            assert net.fed == []
            continue
        got = DiscreteDenoiser(model, AC, dtype=dtype)(x, sigma)
        assert net.fed == [fed], f"{wrap} with dtype={dtype}: the network was fed {net.fed}, expected [{fed}]"
        net.fed.clear()
        assert got.dtype == x_dtype and got.shape == x.shape
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_model_outputs_tuple_and_tensor_agree() -> None:
    x = torch.randn(2, 2, 3, generator=gen(15), dtype=torch.float64)
    as_tensor = DiscreteDenoiser(toy_net, AC)(x, 0.5)
    as_tuple = DiscreteDenoiser(lambda x_in, t: (toy_net(x_in, t),), AC)(x, 0.5)
    torch.testing.assert_close(as_tuple, as_tensor, rtol=0, atol=0)


# ----------------------------------------------------------------------------- bad input


BAD_INPUTS: list[tuple[str, Callable[[], object]]] = [
    ("prediction_type", lambda: DiscreteDenoiser(toy_net, AC, prediction_type="x0")),
    ("alphas_cumprod", lambda: DiscreteDenoiser(toy_net, AC.flip(0))),
    ("alphas_cumprod", lambda: DiscreteDenoiser(toy_net, AC[:1])),
    ("quantize", lambda: DiscreteDenoiser(toy_net, AC, quantize=1)),
    ("dtype", lambda: DiscreteDenoiser(toy_net, AC, dtype=torch.int64)),
    ("sigma", lambda: DiscreteDenoiser(toy_net, AC)(torch.zeros(2, 3), -0.5)),
    ("sigma", lambda: DiscreteDenoiser(toy_net, AC)(torch.zeros(2, 3), torch.ones(3))),
    ("sigma", lambda: DiscreteDenoiser(toy_net, AC).sigma_to_t(-1.0)),
    ("t must", lambda: DiscreteDenoiser(toy_net, AC).t_to_sigma(999.5)),
    ("model output", lambda: DiscreteDenoiser(lambda x_in, t: x_in.repeat(1, 2), AC)(torch.zeros(2, 3), 1.0)),
    ("weights", lambda: GaussianMixtureDenoiser(torch.zeros(2, 1), torch.ones(2), torch.tensor([0.5, 0.6]))),
    ("weights", lambda: GaussianMixtureDenoiser(torch.zeros(2, 1), torch.ones(2), torch.tensor([1.5, -0.5]))),
    ("stds", lambda: GaussianMixtureDenoiser(torch.zeros(2, 1), torch.tensor([1.0, -1.0]), torch.ones(2) / 2)),
    ("stds", lambda: GaussianMixtureDenoiser(torch.zeros(3, 1), torch.ones(2), torch.ones(3) / 3)),
    ("x must", lambda: mixture_nd()(torch.zeros(2, 3, 2), 1.0)),
    ("class_labels", lambda: mixture_nd()(torch.zeros(2, 2, 3), 1.0, class_labels=torch.tensor([0, 3]))),
    ("class_labels", lambda: mixture_nd()(torch.zeros(2, 2, 3), 1.0, class_labels=torch.tensor([0.0, 1.0]))),
    ("std", lambda: GaussianDenoiser(0.0, -1.0)),
    ("std", lambda: GaussianDenoiser(torch.zeros(3), torch.ones(2))),
    ("x of shape", lambda: GaussianDenoiser(torch.zeros(3), 1.0)(torch.zeros(2, 4), 1.0)),
    ("sigma_to", lambda: gaussian_ode_solution(torch.zeros(2, 3), 1.0, -1.0, 0.0, 1.0)),
    ("n must", lambda: GaussianDenoiser(0.0, 1.0).sample(0)),
]


@pytest.mark.parametrize(("match", "make"), BAD_INPUTS, ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_value_error(match: str, make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_unexpected_conditioning_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="encoder_hidden_states"):
        GaussianDenoiser(0.0, 1.0)(torch.zeros(2, 3), 1.0, encoder_hidden_states=torch.zeros(2))


def test_a_module_fed_another_dtype_gets_a_clear_error_naming_the_fix():

    class HalfLinear(torch.nn.Linear):
        def forward(self, x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return super().forward(x_in)

    half = HalfLinear(2, 2).half()  # weights float16, x float32: torch's own error would name mat1 and mat2
    with pytest.raises(ValueError, match=r"weights are torch.float16 but it would be fed torch.float32: pass .*dtype="):
        DiscreteDenoiser(half, AC)(torch.zeros(3, 2), 1.0)
    out = DiscreteDenoiser(half, AC, dtype=torch.float16)(torch.zeros(3, 2), 1.0)  # the fix the message names
    assert out.dtype == torch.float32 and out.shape == (3, 2)
    with pytest.raises(TypeError, match="model must be callable"):
        DiscreteDenoiser(None, AC)
