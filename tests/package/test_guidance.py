"""Classifier-free guidance and its fixes, against diffusers and exact class-conditional denoisers."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from diffusion_internals import schedules
from diffusion_internals.denoisers import GaussianMixtureDenoiser
from diffusion_internals.guidance import (
    APG,
    CFGDenoiser,
    apg_delta,
    cfg,
    dynamic_threshold,
    guidance_scale_schedule,
    rescale_cfg,
)
from diffusion_internals.samplers import sample_ddim_cfgpp, sample_euler, sample_euler_cfgpp, sample_heun

NULL = torch.tensor([-1])  # the mixture's "no class" label: the unconditional denoiser


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class Counting:
    """Wraps a denoiser and records the batch size of every call."""

    def __init__(self, denoiser):
        self.denoiser, self.batches = denoiser, []

    def __call__(self, x, sigma, **cond):
        self.batches.append(x.shape[0])
        return self.denoiser(x, sigma, **cond)


@pytest.fixture
def mixture():
    """Two classes in 2-D, overlapping: class 0 around (-0.5, 0), class 1 around (0.5, 0)."""
    means = torch.tensor([[-0.5, 0.0], [0.5, 0.0]], dtype=torch.float64)
    return GaussianMixtureDenoiser(
        means, torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    )


# ---------------------------------------------------------------------------- the formulas, against diffusers


@pytest.mark.parametrize("phi", [0.0, 0.3, 0.7, 1.0])
def test_rescale_cfg_equals_diffusers_rescale_noise_cfg(phi):
    guided, cond = randn(4, 3, 8, 8, seed=1) * 3, randn(4, 3, 8, 8, seed=2)
    torch.testing.assert_close(rescale_cfg(guided, cond, phi), rescale_noise_cfg(guided, cond, guidance_rescale=phi))


@pytest.mark.parametrize(("percentile", "max_value"), [(0.995, 1.0), (0.9, 1.5), (0.5, 3.0), (1.0, 10.0)])
def test_dynamic_threshold_equals_diffusers_ddpm_thresholding(percentile, max_value):
    x0 = randn(5, 3, 6, 6, seed=3) * 2.5
    scheduler = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=percentile, sample_max_value=max_value)
    torch.testing.assert_close(dynamic_threshold(x0, percentile, max_value), scheduler._threshold_sample(x0))


def test_dynamic_threshold_keeps_values_in_unit_range_and_is_identity_inside_it():
    x0 = randn(8, 50, seed=4) * 4
    out = dynamic_threshold(x0, 0.9, 3.0)
    assert out.abs().max() <= 1.0 + 1e-12
    small = randn(3, 50, seed=5).clamp(-0.9, 0.9)
    torch.testing.assert_close(dynamic_threshold(small, 0.995, 2.0), small)  # s clamps to 1: nothing changes


def test_cfg_endpoints_are_exact_and_match_the_papers_form():
    uncond, cond = randn(4, 7, seed=6), randn(4, 7, seed=7)
    assert torch.equal(cfg(uncond, cond, 1.0), cond)
    assert torch.equal(cfg(uncond, cond, 0.0), uncond)
    w = 6.5  # Ho & Salimans: (1 + w) cond - w uncond
    torch.testing.assert_close(cfg(uncond, cond, 1 + w), (1 + w) * cond - w * uncond)


# ---------------------------------------------------------------------------- the wrapper


def test_one_batched_model_call_per_step(mixture):
    counted = Counting(mixture)
    guided = CFGDenoiser(counted, 5.0, uncond={"class_labels": NULL})
    labels = torch.tensor([0, 1, 1, 0])
    sigmas = schedules.sigmas_karras(12, 0.01, 20.0)
    sample_euler(guided, randn(4, 2, seed=8) * 20, sigmas, extra_args={"class_labels": labels})
    assert counted.batches == [8] * 12


def test_cfg_wrapper_equals_the_formula_on_exact_denoisers(mixture):
    x, sigma, labels = randn(6, 2, seed=9) * 2, torch.full((6,), 1.3, dtype=torch.float64), torch.tensor([0, 1] * 3)
    out = CFGDenoiser(mixture, 4.0, uncond={"class_labels": NULL})(x, sigma, class_labels=labels)
    d_u = mixture(x, sigma, class_labels=NULL.expand(6))
    d_c = mixture(x, sigma, class_labels=labels)
    torch.testing.assert_close(out, d_u + 4.0 * (d_c - d_u))


def test_apg_with_eta_1_no_threshold_no_momentum_is_plain_cfg(mixture):
    x, sigma, labels = randn(6, 2, seed=10) * 2, torch.full((6,), 0.8, dtype=torch.float64), torch.tensor([0, 1] * 3)
    plain = CFGDenoiser(mixture, 3.0, uncond={"class_labels": NULL})(x, sigma, class_labels=labels)
    apg = CFGDenoiser(mixture, 3.0, uncond={"class_labels": NULL}, apg=APG(eta=1.0))(x, sigma, class_labels=labels)
    torch.testing.assert_close(apg, plain)


def test_apg_projection_threshold_and_momentum():
    delta, cond = randn(4, 3, 5, 5, seed=11), randn(4, 3, 5, 5, seed=12)
    dims = [1, 2, 3]
    update, _ = apg_delta(delta, cond, APG(eta=0.0))
    # eta = 0 keeps only the part orthogonal to the conditional prediction
    torch.testing.assert_close((update * cond).sum(dims), torch.zeros(4, dtype=torch.float64), atol=1e-10, rtol=0)
    update, _ = apg_delta(delta * 100, cond, APG(eta=1.0, norm_threshold=2.0))
    assert (update.flatten(1).norm(dim=1) <= 2.0 + 1e-9).all()
    # momentum: the second step's difference is delta_2 + beta * delta_1
    apg = APG(eta=1.0, momentum=-0.5)
    _, running = apg_delta(delta, cond, apg)
    update, _ = apg_delta(cond, cond, apg, running)
    torch.testing.assert_close(update, cond - 0.5 * delta)


def test_apg_momentum_restarts_with_each_sampling_run(mixture):
    guided = CFGDenoiser(mixture, 3.0, uncond={"class_labels": NULL}, apg=APG(eta=0.5, momentum=-0.5))
    sigmas = schedules.sigmas_karras(6, 0.05, 10.0)
    x, labels = randn(4, 2, seed=13) * 10, torch.tensor([0, 1, 0, 1])
    first = sample_euler(guided, x, sigmas, extra_args={"class_labels": labels})
    second = sample_euler(guided, x, sigmas, extra_args={"class_labels": labels})
    assert torch.equal(first, second)


def test_interval_covering_everything_is_cfg_and_covering_nothing_is_the_conditional_model(mixture):
    counted = Counting(mixture)
    x, labels = randn(4, 2, seed=14) * 3, torch.tensor([0, 1, 1, 0])
    sigma = torch.full((4,), 2.0, dtype=torch.float64)
    plain = CFGDenoiser(mixture, 5.0, uncond={"class_labels": NULL})(x, sigma, class_labels=labels)
    everything = CFGDenoiser(mixture, 5.0, uncond={"class_labels": NULL}, interval=(0.0, 100.0))
    torch.testing.assert_close(everything(x, sigma, class_labels=labels), plain)
    nothing = CFGDenoiser(counted, 5.0, uncond={"class_labels": NULL}, interval=(3.0, 100.0))
    torch.testing.assert_close(nothing(x, sigma, class_labels=labels), mixture(x, sigma, class_labels=labels))
    assert counted.batches == [4]  # outside the interval the unconditional pass is skipped


def test_guidance_scale_schedules():
    constant = guidance_scale_schedule(7.0, kind="constant", sigma_min=0.1, sigma_max=10.0)
    linear = guidance_scale_schedule(7.0, kind="linear", sigma_min=0.1, sigma_max=10.0)
    cosine = guidance_scale_schedule(7.0, kind="cosine", sigma_min=0.1, sigma_max=10.0, increasing=True)
    sigma = torch.tensor([10.0, 1.0, 0.1])  # 1.0 is the middle in log sigma
    torch.testing.assert_close(constant(sigma), torch.full((3,), 7.0, dtype=torch.float64))
    torch.testing.assert_close(linear(sigma), torch.tensor([7.0, 4.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(cosine(sigma), torch.tensor([1.0, 4.0, 7.0], dtype=torch.float64))


def test_guidance_scale_is_one_keyword_everywhere(mixture):
    # diffusers' name for the guidance strength, the keyword of every function that takes one.
    uncond, cond = randn(4, 7, seed=6), randn(4, 7, seed=7)
    torch.testing.assert_close(cfg(uncond, cond, guidance_scale=3.0), 3.0 * cond - 2.0 * uncond)
    ramp = guidance_scale_schedule(guidance_scale=7.0, kind="linear", sigma_min=0.1, sigma_max=10.0)
    guided = CFGDenoiser(mixture, guidance_scale=ramp, uncond={"class_labels": NULL})
    assert guided.guidance_scale is ramp
    x, labels = randn(3, 2, seed=19), torch.tensor([0, 1, 1])
    sigma = torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64)  # the ramp's 7, 4 and 1 (middle in log sigma)
    d_u, d_c = mixture(x, sigma, class_labels=NULL.expand(3)), mixture(x, sigma, class_labels=labels)
    expected = d_u + torch.tensor([[7.0], [4.0], [1.0]], dtype=torch.float64) * (d_c - d_u)
    torch.testing.assert_close(guided(x, sigma, class_labels=labels), expected)


@pytest.mark.parametrize("apg", [None, APG(eta=0.0)])
def test_a_guidance_scale_function_may_return_a_number(mixture, apg):
    # "A function of sigma": lambda sigma: 3.0 used to fail with 'float' object has no attribute 'to'.
    x, labels, sigma = randn(3, 2, seed=20), torch.tensor([0, 1, 1]), torch.tensor([5.0, 1.0, 0.2], dtype=torch.float64)
    as_function = CFGDenoiser(mixture, lambda sigma: 3.0, uncond={"class_labels": NULL}, apg=apg)
    as_number = CFGDenoiser(mixture, 3.0, uncond={"class_labels": NULL}, apg=apg)
    torch.testing.assert_close(as_function(x, sigma, class_labels=labels), as_number(x, sigma, class_labels=labels))
    if apg is None:  # the oracle: uncond + 3 (cond - uncond) from the exact mixture (Ho & Salimans 2021, eq. 6)
        d_u, d_c = mixture(x, sigma, class_labels=NULL.expand(3)), mixture(x, sigma, class_labels=labels)
        torch.testing.assert_close(as_function(x, sigma, class_labels=labels), d_u + 3.0 * (d_c - d_u))
    negative = CFGDenoiser(mixture, lambda sigma: -1.0, uncond={"class_labels": NULL})
    with pytest.raises(ValueError, match="guidance_scale must be >= 0, got -1.0"):
        negative(x, sigma, class_labels=labels)


# ---------------------------------------------------------------------------- what guidance does to samples


def guided_samples(mixture, guidance_scale, *, n=4000, rescale=0.0, label=1, seed=0):
    guided = CFGDenoiser(mixture, guidance_scale, uncond={"class_labels": NULL}, rescale=rescale)
    sigmas = schedules.sigmas_karras(40, 0.002, 40.0)
    x = randn(n, 2, seed=seed) * math.sqrt(40.0**2 + 1)  # the noised data at sigma_max has variance s^2 + 40^2
    # Heun (second order) with 40 steps: its discretisation error is far below the sampling error at n = 4000.
    return sample_heun(guided, x, sigmas, extra_args={"class_labels": torch.full((n,), label)})


def test_larger_scales_pull_samples_to_their_class_and_shrink_the_spread(mixture):
    means, spreads, accuracies, across = [], [], [], []
    for guidance_scale in (1.0, 3.0, 7.0):
        samples = guided_samples(mixture, guidance_scale)
        means.append(samples[:, 0].mean().item())  # along the axis that separates the classes
        spreads.append(samples[:, 0].std().item())
        across.append(samples[:, 1].std().item())  # the classes agree across it
        accuracies.append((samples[:, 0] > 0).double().mean().item())  # Bayes classifier for class 1
    # Scale 1 is the class-conditional distribution N((0.5, 0), 0.5^2 I): std 0.5, P(x > 0) = Phi(1) = 0.841.
    n = 4000
    assert abs(means[0] - 0.5) < 5 * 0.5 / math.sqrt(n)
    assert abs(spreads[0] - 0.5) < 5 * 0.5 / math.sqrt(2 * n)
    assert abs(accuracies[0] - 0.8413) < 5 * math.sqrt(0.8413 * 0.1587 / n)
    # Guidance pushes samples away from the other class and narrows them along that direction ...
    assert means[0] < means[1] < means[2]
    assert spreads[0] > spreads[1] > spreads[2]
    assert accuracies[0] < accuracies[1] <= accuracies[2]
    # ... and changes nothing where the conditional and unconditional models agree.
    assert max(across) - min(across) < 1e-9


def test_rescale_with_phi_1_restores_the_conditional_std(mixture):
    x, sigma, labels = randn(8, 2, seed=15) * 3, torch.full((8,), 1.5, dtype=torch.float64), torch.full((8,), 1)
    out = CFGDenoiser(mixture, 9.0, uncond={"class_labels": NULL}, rescale=1.0)(x, sigma, class_labels=labels)
    d_c = mixture(x, sigma, class_labels=labels)
    torch.testing.assert_close(out.std(dim=1), d_c.std(dim=1))


def test_thresholded_guidance_stays_in_range(mixture):
    x, sigma, labels = randn(8, 2, seed=16) * 5, torch.full((8,), 3.0, dtype=torch.float64), torch.full((8,), 1)
    out = CFGDenoiser(mixture, 15.0, uncond={"class_labels": NULL}, threshold=0.995, threshold_max_value=1.0)
    assert out(x, sigma, class_labels=labels).abs().max() <= 1.0 + 1e-12


# ---------------------------------------------------------------------------- CFG++


def test_cfgpp_step_equals_the_papers_ddim_form(mixture):
    """One step against Chung et al. 2024, Algorithm 1, written in the variance-preserving view."""
    lam, sigma, sigma_next = 0.6, 2.0, 0.7
    labels = torch.tensor([0, 1, 1])
    guided = CFGDenoiser(mixture, lam, uncond={"class_labels": NULL})
    x = randn(3, 2, seed=17) * sigma
    steps = []
    sample_ddim_cfgpp(
        guided,
        x,
        torch.tensor([sigma, sigma_next, 0.0], dtype=torch.float64),
        extra_args={"class_labels": labels},
        callback=lambda **kw: steps.append(kw["x"]),
    )
    # VP view: x_vp = sqrt(abar) x, abar = 1 / (1 + sigma^2); eps from the unconditional x0 prediction.
    abar, abar_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
    x_vp = math.sqrt(abar) * x
    d_u = mixture(x, torch.full((3,), sigma, dtype=torch.float64), class_labels=NULL.expand(3))
    d_c = mixture(x, torch.full((3,), sigma, dtype=torch.float64), class_labels=labels)
    eps_u = (x_vp - math.sqrt(abar) * d_u) / math.sqrt(1 - abar)
    x0_lam = d_u + lam * (d_c - d_u)
    x_next_vp = math.sqrt(abar_next) * x0_lam + math.sqrt(1 - abar_next) * eps_u
    torch.testing.assert_close(steps[0], x_next_vp / math.sqrt(abar_next))


def test_cfgpp_without_a_condition_effect_is_plain_euler(mixture):
    """When the condition changes nothing, CFG++ renoises with the same eps as Euler: identical samples."""
    blind = lambda x, sigma, class_labels: mixture(x, sigma)  # noqa: E731 (ignores the label)
    guided = CFGDenoiser(blind, 0.8, uncond={"class_labels": NULL})
    sigmas = schedules.sigmas_karras(10, 0.01, 10.0)
    x, labels = randn(5, 2, seed=18) * 10, torch.zeros(5, dtype=torch.long)
    torch.testing.assert_close(
        sample_euler_cfgpp(guided, x, sigmas, extra_args={"class_labels": labels}), sample_euler(mixture, x, sigmas)
    )


def test_cfgpp_needs_a_cfg_denoiser(mixture):
    with pytest.raises(ValueError, match="denoiser must be a guidance.CFGDenoiser"):
        sample_euler_cfgpp(mixture, randn(2, 2), schedules.sigmas_karras(3, 0.1, 1.0))


# ---------------------------------------------------------------------------- bad input


def test_bad_input_names_the_parameter(mixture):
    u, c = randn(2, 3), randn(2, 3)
    with pytest.raises(ValueError, match=r"guidance_scale must satisfy value >= 0 .*got -1.0"):
        cfg(u, c, -1.0)
    with pytest.raises(ValueError, match=r"guidance_scale must be >= 0, got -0.5"):
        cfg(u, c, torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"guidance_scale must satisfy .*or a function of sigma, got -2.0"):
        CFGDenoiser(mixture, -2.0, uncond={"class_labels": NULL})
    with pytest.raises(ValueError, match=r"guidance_scale must be a finite real number .*got '7'"):
        CFGDenoiser(mixture, "7", uncond={"class_labels": NULL})
    with pytest.raises(ValueError, match=r"guidance_scale must be a finite real number .*got inf"):
        guidance_scale_schedule(math.inf, sigma_min=0.1, sigma_max=1.0)
    with pytest.raises(ValueError, match="phi must be"):
        rescale_cfg(u, c, 1.5)
    with pytest.raises(ValueError, match=r"rescale \(phi\) must be"):
        CFGDenoiser(mixture, 2.0, uncond={"class_labels": NULL}, rescale=-0.1)
    for percentile in (0.0, 1.2):
        with pytest.raises(ValueError, match="percentile must be"):
            dynamic_threshold(u, percentile)
    with pytest.raises(ValueError, match="max_value must be"):
        dynamic_threshold(u, 0.9, 0.5)
    with pytest.raises(ValueError, match="interval must satisfy"):
        CFGDenoiser(mixture, 2.0, uncond={"class_labels": NULL}, interval=(2.0, 1.0))
    with pytest.raises(ValueError, match="eta must be"):
        APG(eta=-1.0)
    with pytest.raises(ValueError, match="uncond must be"):
        CFGDenoiser(mixture, 2.0, uncond={})
    with pytest.raises(ValueError, match="kind must be one of"):
        guidance_scale_schedule(3.0, kind="exp", sigma_min=0.1, sigma_max=1.0)


def test_cfg_denoiser_exposes_the_wrapped_training_schedule_to_the_front_door(mixture):
    from support import eps_model_from_denoiser

    from diffusion_internals.denoisers import DiscreteDenoiser
    from diffusion_internals.sampling import sample

    abar = schedules.alphas_cumprod(schedules.make_betas("cosine", num_steps=1000))
    discrete = DiscreteDenoiser(eps_model_from_denoiser(mixture, abar), abar)
    guided = CFGDenoiser(discrete, 3.0, uncond={"class_labels": NULL})
    assert (guided.sigma_min, guided.sigma_max) == (discrete.sigma_min, discrete.sigma_max)
    assert guided.alphas_cumprod is discrete.alphas_cumprod
    out = sample(
        guided,
        (4, 2),
        sampler="ddim",
        steps=5,
        schedule="trailing",
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
        extra_args={"class_labels": torch.tensor([0, 1, 0, 1])},
    )
    assert out.shape == (4, 2) and torch.isfinite(out).all()
    with pytest.raises(AttributeError):
        _ = CFGDenoiser(mixture, 3.0, uncond={"class_labels": NULL}).sigma_min
