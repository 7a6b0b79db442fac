"""The learner-facing k-diffusion loader (`diffusion_internals.course.kdiffusion`) and k-diffusion on a course model.

k-diffusion's samplers take a denoiser `model(x, sigma, **extra_args) -> x0_hat`, the interface of the course's
samplers, so they run on a course checkpoint unchanged and, from the same noise on the same sigma grid, must give
the course's samples. A missing k-diffusion (or a missing dependency of its samplers) is simulated with
monkeypatch, and the error must name the install command.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch

from diffusion_internals import samplers, sampling
from diffusion_internals.course import checkpoints, kdiffusion

SAMPLERS = ("sample_euler", "sample_heun", "sample_dpmpp_2m")


@pytest.fixture(scope="module")
def digits():
    """The committed class-conditional eps U-Net of chapter 4 as a DiscreteDenoiser."""
    return checkpoints.load_denoiser("digits-cosine-eps")


def test_the_helper_imports_k_diffusions_samplers_and_wrappers():
    K = kdiffusion.import_sampling()
    assert K.__name__ == "k_diffusion.sampling"
    assert all(callable(getattr(K, name)) for name in (*SAMPLERS, "sample_euler_ancestral", "get_sigmas_karras"))
    assert kdiffusion.import_sampling() is K, "a second call imports again"
    assert sys.modules["k_diffusion.sampling"] is K, "the helper's module is not the one imported"
    external = kdiffusion.import_external()
    assert external.__name__ == "k_diffusion.external" and hasattr(external, "DiscreteEpsDDPMDenoiser")
    assert kdiffusion.import_external() is external, "a second call imports again"
    assert "torchvision" not in sys.modules or sys.modules["torchvision"].__spec__ is not None, (
        "the empty torchvision stand-in was left in sys.modules"
    )


@pytest.mark.parametrize("name", SAMPLERS)
def test_k_diffusions_sampler_on_a_course_denoiser_gives_the_courses_samples(name, digits, one_thread):
    K = kdiffusion.import_sampling()
    labels = torch.tensor([0, 3, 7, 9])
    sigmas = sampling.sigmas_for(digits, 6, sigma_max=80.0)  # float64, ends in 0
    g = torch.Generator().manual_seed(0)
    x = torch.randn((4, 1, 8, 8), generator=g, dtype=torch.float64) * math.sqrt(1 + 80.0**2)  # (B, C, H, W)
    extra_args = {"class_labels": labels}
    ours = getattr(samplers, name)(digits, x, sigmas, extra_args=extra_args)
    theirs = getattr(K, name)(digits, x, sigmas, extra_args=extra_args, disable=True)
    assert theirs.shape == ours.shape and theirs.dtype == torch.float64
    # The same float64 arithmetic up to rearranged formulas; the network sees float32 inputs either way. Measured
    # differences are 0 (Euler, Heun) and ~1e-14 (DPM++ 2M); 1e-6 is far below any algorithmic difference: Euler
    # and Heun from the same noise differ by more than 1e-2 (checked below, so the tolerance can fail).
    torch.testing.assert_close(theirs, ours, rtol=1e-6, atol=1e-6)
    other = "sample_heun" if name != "sample_heun" else "sample_euler"
    assert (getattr(K, other)(digits, x, sigmas, extra_args=extra_args, disable=True) - ours).abs().max() > 1e-2


@pytest.fixture
def no_k_diffusion_imported(monkeypatch):
    """Forget the imported k-diffusion modules for one test (monkeypatch puts them back)."""
    for name in [n for n in sys.modules if n == "k_diffusion" or n.startswith("k_diffusion.")]:
        monkeypatch.delitem(sys.modules, name)


def test_a_missing_k_diffusion_raises_with_the_install_command(monkeypatch, no_k_diffusion_imported):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "k_diffusion" else find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"not installed.*pip install --no-deps k-diffusion==0\.1\.1\.post1") as info:
        kdiffusion.import_sampling()
    assert info.value.name == "k_diffusion"
    assert "k_diffusion" not in sys.modules
    with pytest.raises(ImportError, match="pip install --no-deps k-diffusion"):
        kdiffusion.import_external()


def test_a_missing_dependency_of_the_samplers_is_named_and_leaves_no_half_import(monkeypatch, no_k_diffusion_imported):
    monkeypatch.setitem(sys.modules, "torchsde", None)  # `import torchsde` now fails with ModuleNotFoundError
    with pytest.raises(ImportError, match=r"'torchsde'.*pip install --no-deps k-diffusion") as info:
        kdiffusion.import_sampling()
    assert info.value.name == "torchsde"
    left = sorted(n for n in sys.modules if n == "k_diffusion" or n.startswith("k_diffusion."))
    assert not left, f"a failed import left {left} in sys.modules"
    assert "torchvision" not in sys.modules or sys.modules["torchvision"].__spec__ is not None
