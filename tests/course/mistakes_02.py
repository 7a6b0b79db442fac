"""Plausible learner mistakes in assignment 02: each replaces one solution cell and must fail exactly `fails`.

Read by the course's notebook checks: every mistake loses the points of one graded cell, never more (each test
cell grades one function on reference inputs).
"""

from __future__ import annotations

_CONVERSIONS = """
def _per_sample(alpha_bar, x):
    a = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return a.reshape(-1, *([1] * (x.ndim - 1)))


def x0_from_eps(x_t, eps, alpha_bar):
    a = _per_sample(alpha_bar, x_t)
    return ({x0_from_eps}).to(x_t.dtype)


def v_target(x0, eps, alpha_bar):
    a = _per_sample(alpha_bar, x0)
    return ({v_target}).to(x0.dtype)


def x0_from_v(x_t, v, alpha_bar):
    a = _per_sample(alpha_bar, x_t)
    return (a.sqrt() * x_t - (1 - a).sqrt() * v).to(x_t.dtype)
"""


def _conversions(
    x0_from_eps: str = "(x_t - (1 - a).sqrt() * eps) / a.sqrt()", v_target: str = "a.sqrt() * eps - (1 - a).sqrt() * x0"
) -> str:
    return _CONVERSIONS.replace("{x0_from_eps}", x0_from_eps).replace("{v_target}", v_target)


_LOSS = """
def eps_prediction_loss(model, x0, t, noise, alphas_cumprod):
    abar = alphas_cumprod[t].reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    x_t = {x_t}
    return {loss}
"""


def _loss(
    x_t: str = "abar.sqrt() * x0 + (1 - abar).sqrt() * noise", loss: str = "(model(x_t, t) - noise).pow(2).mean()"
) -> str:
    return _LOSS.replace("{x_t}", x_t).replace("{loss}", loss)


_STEP = """
def ddpm_reverse_step(x_t, t, eps_hat, alphas_cumprod, noise, x0_from_eps=x0_from_eps):
    abar = float(alphas_cumprod[t])
    abar_prev = {abar_prev}
    beta = 1 - abar / abar_prev
    x0_hat = x0_from_eps(x_t, eps_hat, abar)
    mean = (abar_prev**0.5 * beta / (1 - abar)) * x0_hat + ((1 - beta) ** 0.5 * (1 - abar_prev) / (1 - abar)) * x_t
    variance = {variance}
    return (mean + variance**0.5 * noise).to(x_t.dtype)
"""


def _step(
    abar_prev: str = "float(alphas_cumprod[t - 1]) if t > 0 else 1.0",
    variance: str = "(1 - abar_prev) / (1 - abar) * beta",
) -> str:
    return _STEP.replace("{abar_prev}", abar_prev).replace("{variance}", variance)


_SAMPLE = """
@torch.no_grad()
def ddpm_sample(model, x_T, alphas_cumprod, noise, step=ddpm_reverse_step):
    x = x_T
    T = len(alphas_cumprod)
    for {loop}:
        eps_hat = model(x, torch.full((x.shape[0],), t, dtype=torch.int64))
        x = step(x, t, eps_hat, alphas_cumprod, {z})
    return x
"""


def _sample(loop: str = "t in reversed(range(T))", z: str = "noise[t]") -> str:
    return _SAMPLE.replace("{loop}", loop).replace("{z}", z)


_HARDEST = """
def hardest_bucket(loss_at_t, num_buckets=10):
    {body}
"""


def _hardest(body: str) -> str:
    return _HARDEST.replace("{body}", body)


MISTAKES: list[dict] = [
    {
        "name": "loss_sum_instead_of_mean",
        "cell": "eps_prediction_loss",
        "source": _loss(loss="(model(x_t, t) - noise).pow(2).sum()"),
        "fails": {"test_eps_prediction_loss"},
    },
    {
        "name": "loss_mean_over_the_wrong_axis",
        "cell": "eps_prediction_loss",
        "source": _loss(loss="(model(x_t, t) - noise).pow(2).sum(0).mean()"),  # sums the batch, averages the rest
        "fails": {"test_eps_prediction_loss"},
    },
    {
        "name": "loss_with_abar_instead_of_its_square_root",
        "cell": "eps_prediction_loss",
        "source": _loss(x_t="abar * x0 + (1 - abar) * noise"),
        "fails": {"test_eps_prediction_loss"},
    },
    {
        "name": "x0_from_eps_with_abar_instead_of_sqrt_abar",
        "cell": "conversions",
        "source": _conversions(x0_from_eps="(x_t - (1 - a).sqrt() * eps) / a"),
        "fails": {"test_x0_from_eps"},
    },
    {
        "name": "v_target_sign_flipped",
        "cell": "conversions",
        "source": _conversions(v_target="(1 - a).sqrt() * x0 - a.sqrt() * eps"),
        "fails": {"test_v"},
    },
    {
        "name": "ddpm_step_with_beta_instead_of_the_posterior_variance",
        "cell": "ddpm_reverse_step",
        "source": _step(variance="beta"),
        "fails": {"test_ddpm_reverse_step"},
    },
    {
        "name": "ddpm_step_without_the_t0_case",
        "cell": "ddpm_reverse_step",
        "source": _step(abar_prev="float(alphas_cumprod[t - 1])"),  # at t = 0, index -1 is the LAST alpha_bar
        "fails": {"test_ddpm_reverse_step"},
    },
    {
        "name": "sample_chain_stops_before_t0",
        "cell": "ddpm_sample",
        "source": _sample(loop="t in range(T - 1, 0, -1)"),
        "fails": {"test_ddpm_sample"},
    },
    {
        "name": "sample_chain_noise_in_loop_order",
        "cell": "ddpm_sample",
        "source": _sample(loop="i, t in enumerate(reversed(range(T)))", z="noise[i]"),  # noise[T - 1 - t], not noise[t]
        "fails": {"test_ddpm_sample"},
    },
    {
        "name": "hardest_bucket_typed_constant",
        "cell": "hardest",
        "source": _hardest("return 0  # read off the plot"),
        "fails": {"test_hardest"},
    },
    {
        "name": "hardest_bucket_of_the_single_largest_loss",
        "cell": "hardest",
        "source": _hardest("return int(loss_at_t.argmax()) // (len(loss_at_t) // num_buckets)"),
        "fails": {"test_hardest"},
    },
]
