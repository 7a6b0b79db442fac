"""UniPC against the exact ODE of Gaussian data (its convergence order) and against DDIM (its first order).

diffusers' UniPCMultistepScheduler is the step-by-step oracle in test_diffusers_parity.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_internals.denoisers import GaussianDenoiser, gaussian_ode_solution
from diffusion_internals.samplers import sample_ddim, sample_unipc
from diffusion_internals.schedules import sigmas_karras

MEAN, STD = 0.5, 0.7
DATA = GaussianDenoiser(MEAN, STD)
X_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80  # (B, D) at sigma 80


def error(steps: int, **options) -> float:
    """max |UniPC - exact ODE solution| from sigma = 80 to 0 on a Karras grid of `steps` steps."""
    sigmas = sigmas_karras(steps, 0.002, 80.0)
    exact = gaussian_ode_solution(X_T, 80.0, 0.0, MEAN, STD)
    return (sample_unipc(DATA, X_T, sigmas, **options) - exact).abs().max().item()


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize(
    "order, corrector, expected",
    [
        (1, False, 1),  # UniP-1 is DPM-Solver++(1)
        (1, True, 2),  # UniC raises the order by one at no extra network call (Zhao et al. 2023, Sec. 3.1)
        (2, False, 2),
        (2, True, 3),
    ],
)
def test_convergence_order(variant, order, corrector, expected):
    # 40 -> 80 steps: at 20 -> 40 bh1's UniP-2 is still pre-asymptotic (observed 2.7, then 2.2, 2.1).
    observed = math.log2(
        error(40, order=order, corrector=corrector, variant=variant)
        / error(80, order=order, corrector=corrector, variant=variant)
    )
    assert expected - 0.4 < observed < expected + 0.6, observed


def test_first_order_predictor_alone_is_ddim():
    # UniP-1 without corrector is x_next = (sigma_next / sigma) x + (1 - sigma_next / sigma) D: DDIM (eta = 0).
    sigmas = sigmas_karras(7, 0.1, 20.0)
    torch.testing.assert_close(
        sample_unipc(DATA, X_T, sigmas, order=1, corrector=False),
        sample_ddim(DATA, X_T, sigmas),
        rtol=1e-12,
        atol=1e-12,
    )


def test_one_network_call_per_step_and_a_callback_after_each():
    calls, seen = [], []

    def counting(x, sigma):
        calls.append(sigma)
        return DATA(x, sigma)

    sigmas = sigmas_karras(9, 0.01, 20.0)
    out = sample_unipc(counting, X_T, sigmas, callback=lambda **kw: seen.append(kw))
    assert len(calls) == 9 and len(seen) == 9
    assert sorted(seen[0]) == ["denoised", "i", "sigma", "sigma_next", "x"]
    assert [kw["i"] for kw in seen] == list(range(9))
    # The last step lands on sigma = 0, where only the first-order limit exists: x = D(x, sigma_min).
    torch.testing.assert_close(out, seen[-1]["denoised"], rtol=0, atol=0)
    torch.testing.assert_close(seen[-1]["x"], out, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"order": 0}, r"order must be one of \[1, 2, 3\], got 0"),
        ({"order": 4}, r"order must be one of \[1, 2, 3\], got 4"),
        ({"order": 2.0}, r"order must be one of \[1, 2, 3\], got 2.0"),
        ({"order": True}, r"order must be one of \[1, 2, 3\], got True"),
        ({"variant": "bh3"}, r"variant must be one of \['bh1', 'bh2'\], got 'bh3'"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_unipc(DATA, X_T, sigmas_karras(3, 0.1, 10.0), **kwargs)


def test_bad_sigmas():
    with pytest.raises(ValueError, match="sigmas must end in 0"):
        sample_unipc(DATA, X_T, torch.tensor([10.0, 1.0], dtype=torch.float64))
