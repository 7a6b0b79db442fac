"""The field-guide measures against closed forms, numpy loops and the samplers' own behaviour.

Oracles: a checkerboard of +-1 has every neighbour difference 2 (energy 4); white noise of std s adds
2 s^2 to the energy (Var(a - b) = 2 s^2 for independent draws); numpy's std; float16's largest finite
value 65504; and a per-sample function, which must give the same rows in a batch as alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_internals import samplers, schedules
from diffusion_internals.course import metrics
from diffusion_internals.denoisers import GaussianDenoiser
from diffusion_internals.utils import per_sample_generators


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def numpy_gradient_energy(images: np.ndarray) -> np.ndarray:
    """The same measure written as explicit loops over pixel pairs."""
    out = []
    for image in images:
        total, count = 0.0, 0
        for c in range(image.shape[0]):
            for i in range(image.shape[1]):
                for j in range(image.shape[2]):
                    if j + 1 < image.shape[2]:
                        total, count = total + (image[c, i, j + 1] - image[c, i, j]) ** 2, count + 1
                    if i + 1 < image.shape[1]:
                        total, count = total + (image[c, i + 1, j] - image[c, i, j]) ** 2, count + 1
        out.append(total / count)
    return np.array(out)


def test_gradient_energy_matches_loops_and_closed_forms():
    x = torch.randn(3, 2, 5, 7, generator=gen(0))
    np.testing.assert_allclose(
        metrics.gradient_energy(x).numpy(), numpy_gradient_energy(x.double().numpy()), rtol=1e-12
    )
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1  # +-1 checkerboard
    assert metrics.gradient_energy(checker.reshape(1, 1, 8, 8)).item() == pytest.approx(4.0)
    assert metrics.gradient_energy(torch.full((2, 3, 4, 4), 0.3)).abs().max().item() == 0.0


@pytest.mark.parametrize("s", [0.05, 0.2, 0.7])
def test_residual_noise_std_recovers_added_white_noise(s):
    ramp = torch.linspace(-1, 1, 16)
    smooth = (ramp[:, None] * ramp[None, :]).expand(400, 1, 16, 16)  # (400, 1, 16, 16), a smooth image
    noisy = smooth + s * torch.randn(smooth.shape, generator=gen(1))
    assert metrics.residual_noise_std(noisy, smooth) == pytest.approx(s, rel=0.03)
    assert metrics.residual_noise_std(smooth, noisy) == 0.0  # less energy than the reference: clamped to 0


def test_rms_contrast_is_the_per_image_std():
    x = torch.randn(4, 3, 6, 6, generator=gen(2)) * torch.tensor([0.1, 1.0, 2.0, 5.0]).reshape(4, 1, 1, 1)
    expected = x.double().numpy().reshape(4, -1).std(axis=1)
    np.testing.assert_allclose(metrics.rms_contrast(x).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(3, 8, 8),
        torch.zeros(0, 1, 8, 8),
        torch.zeros(2, 1, 1, 8),
        torch.zeros(2, 1, 8, 8, dtype=torch.int64),
        [[0.0]],
    ],
)
def test_image_measures_reject_bad_input(bad):
    with pytest.raises(ValueError, match="images"):
        metrics.gradient_energy(bad)
    with pytest.raises(ValueError, match="images"):
        metrics.rms_contrast(bad)


def test_finite_trace_finds_the_float16_overflow():
    # Gaussian data, sigma_max 2e4: the initial state has std 2e4, and float16 overflows beyond 65504.
    denoiser = GaussianDenoiser(0.0, 0.5)
    sigmas = schedules.sigmas_karras(10, 0.01, 2.0e4)
    z = torch.randn(64, 1, 8, 8, generator=gen(3))
    assert bool((z.abs() * 2.0e4 > 65504).any())  # the premise: some values are beyond float16's range
    for dtype, expected in ((torch.float16, 0), (torch.float32, None)):
        trace = metrics.FiniteTrace()
        samplers.sample_euler(denoiser, (z * 2.0e4).to(dtype), sigmas, callback=trace)
        assert trace.first_nonfinite_step() == expected, dtype
        assert len(trace.sigmas) == 10 and trace.sigmas[0] == pytest.approx(2.0e4)
    trace = metrics.FiniteTrace()
    ok, bad = torch.zeros(2, 2), torch.tensor([[0.0, float("nan")], [0.0, 0.0]])
    for i, denoised in enumerate((ok, ok, bad)):
        trace(x=ok, i=i, sigma=torch.tensor(1.0), sigma_next=torch.tensor(0.5), denoised=denoised)
    assert trace.first_nonfinite_step() == 2 and trace.finite_denoised[2] == 0.75


def test_batch_discrepancy_is_zero_for_per_sample_work_and_not_for_batch_statistics():
    def per_sample(seeds):
        return torch.stack([torch.randn(4, generator=gen(s)) for s in seeds])

    def batch_mean(seeds):  # a statistic over the batch: the bug
        x = per_sample(seeds)
        return x - x.mean(0, keepdim=True)

    assert metrics.batch_discrepancy(per_sample, [1, 2, 3]) == 0.0
    assert metrics.batch_discrepancy(batch_mean, [1, 2, 3]) > 0.1


def test_batch_discrepancy_sees_one_generator_for_the_batch_in_an_ancestral_sampler():
    denoiser, sigmas = GaussianDenoiser(0.0, 0.5), schedules.sigmas_karras(8, 0.01, 10.0)

    def run(one_generator):
        def sample_fn(seeds):
            x = torch.stack([torch.randn(1, 4, 4, generator=gen(s)) for s in seeds]) * 10.0  # (B, 1, 4, 4)
            noise = gen(seeds[0]) if one_generator else per_sample_generators(seeds)
            return samplers.sample_euler_ancestral(denoiser, x, sigmas, noise=noise)

        return sample_fn

    assert metrics.batch_discrepancy(run(False), [5, 6, 7]) == 0.0
    assert metrics.batch_discrepancy(run(True), [5, 6, 7]) > 0.01


@pytest.mark.parametrize("seeds", [[1], 3, [1, 2.0], [True, False], "12"])
def test_batch_discrepancy_rejects_bad_seeds(seeds):
    with pytest.raises(ValueError, match="seeds"):
        metrics.batch_discrepancy(lambda s: torch.zeros(len(s), 2), seeds)


def test_batch_discrepancy_rejects_a_wrong_batch():
    with pytest.raises(ValueError, match="sample_fn"):
        metrics.batch_discrepancy(lambda s: torch.zeros(1, 2), [1, 2])
