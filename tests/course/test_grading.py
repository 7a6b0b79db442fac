"""The feedback helpers used by the hidden tests: each failure names what was expected and what came out."""

import numpy as np
import pytest
import torch

from diffusion_internals import schedules
from diffusion_internals.course.grading import GradingError, check_close, check_equal, check_sampler
from diffusion_internals.denoisers import GaussianDenoiser, GaussianMixtureDenoiser
from diffusion_internals.samplers import sample_euler


def test_passes_within_tolerance():
    check_close("x", torch.tensor([1.0, 2.0 + 1e-9]), torch.tensor([1.0, 2.0]))
    check_close("x", np.array([1.0]), torch.tensor([1.0], dtype=torch.float64))
    check_close("scalar", 0.5, torch.tensor(0.5))


def test_is_an_assertion_error_so_nbgrader_counts_it_as_a_failed_test():
    assert issubclass(GradingError, AssertionError)


@pytest.mark.parametrize(
    ("got", "expected", "message"),
    [
        (None, torch.zeros(3), "got None. Did the function forget to `return`"),
        ("abc", torch.zeros(3), "got an object of type str"),
        (torch.zeros(2), torch.zeros(3), "expected shape (3,), got shape (2,)"),
        (torch.tensor([0.0, float("nan"), 1.0]), torch.zeros(3), "NaN or infinite"),
        (torch.tensor([0.0, 0.5, 0.0]), torch.zeros(3), "Largest difference at index (1,): expected 0, got 0.5"),
    ],
)
def test_failures_say_what_was_expected_and_what_came_out(got, expected, message):
    with pytest.raises(GradingError) as info:
        check_close("betas", got, expected)
    assert str(info.value).startswith("betas: ")
    assert message in str(info.value)


def test_tolerance_is_reported_and_respected():
    with pytest.raises(GradingError, match=r"allowed 1e-08 \+ 1e-06 \* \|expected\|"):
        check_close("x", torch.tensor([1.0 + 1e-5]), torch.tensor([1.0]))
    check_close("x", torch.tensor([1.0 + 1e-5]), torch.tensor([1.0]), rtol=1e-4)


def test_dtype_check_is_opt_in():
    check_close("x", torch.zeros(2, dtype=torch.float32), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(GradingError, match="expected dtype torch.float64, got torch.float32"):
        check_close("x", torch.zeros(2, dtype=torch.float32), torch.zeros(2, dtype=torch.float64), check_dtype=True)


def test_check_equal():
    check_equal("answer", 497, 497)
    with pytest.raises(GradingError, match="answer: expected 497, got 496"):
        check_equal("answer", 496, 497)


# ----------------------------------------------------------------------------- check_sampler: the samplers' harness

DENOISERS = {
    "the exact denoiser of a Gaussian": GaussianDenoiser(torch.tensor([0.3, -0.5]), torch.tensor([0.5, 0.8])),
    "the exact denoiser of a 2-component mixture": GaussianMixtureDenoiser(
        torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.2, 0.3]), torch.tensor([0.6, 0.4])
    ),
}
GRIDS = [schedules.sigmas_karras(1, 0.1, 10.0), schedules.sigmas_karras(12, 0.002, 80.0)]


def euler(denoiser, x, sigmas):
    """Euler's method, written here independently of the package (Karras et al. 2022, Alg. 1 without the correction)."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma
    return x


def check_euler(sampler):
    check_sampler("euler", sampler, sample_euler, denoisers=DENOISERS, sigma_grids=GRIDS, x_shape=(3, 2), seed=1)


def test_check_sampler_passes_a_correct_sampler_even_one_that_updates_x_in_place():
    check_euler(euler)
    check_sampler("euler", euler, sample_euler, seed=41)  # the course's own cases, as the hidden tests use them

    def in_place(denoiser, x, sigmas):
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            x += (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma
        return x

    check_euler(in_place)  # it gets its own copy of x: the reference's input is untouched


def test_check_sampler_names_the_failing_case():
    def wrong_on_long_grids(denoiser, x, sigmas):  # skips the first step when there is more than one
        return euler(denoiser, x, sigmas[1:] if len(sigmas) > 2 else sigmas)

    with pytest.raises(GradingError) as info:
        check_euler(wrong_on_long_grids)
    message = str(info.value)
    assert message.startswith(
        "euler(the exact denoiser of a Gaussian, x of shape (3, 2), sigmas [80, 47.81, ..., 0.002, 0] (12 steps)): "
    ), message
    assert "differ from the reference" in message and "allowed 1e-09 + 1e-09 * |expected|" in message


def test_check_sampler_reports_a_wrong_shape_and_an_exception_with_their_case():
    with pytest.raises(GradingError, match=r"sigmas \[10, 0\] \(1 step\)\): expected shape \(3, 2\), got shape \(3,\)"):
        check_euler(lambda denoiser, x, sigmas: euler(denoiser, x, sigmas)[:, 0])

    def unfinished(denoiser, x, sigmas):
        raise NotImplementedError("not yet")

    with pytest.raises(GradingError, match=r"^euler\(the exact denoiser of a Gaussian, x .*\): raised NotImplemented"):
        check_euler(unfinished)
    with pytest.raises(GradingError, match="forget to `return`"):
        check_euler(lambda denoiser, x, sigmas: None)


def test_check_sampler_default_cases_catch_a_sampler_wrong_only_on_two_step_grids():
    def one_jump_on_two_steps(denoiser, x, sigmas):
        return denoiser(x, sigmas[0]) if len(sigmas) == 3 else euler(denoiser, x, sigmas)

    with pytest.raises(GradingError) as info:
        check_sampler("euler", one_jump_on_two_steps, sample_euler, seed=41)
    assert str(info.value).startswith(
        "euler(the exact denoiser of a Gaussian, x of shape (7, 2), sigmas [10, 0.1, 0] (2 steps))"
    )


def test_check_sampler_refuses_to_check_nothing():
    with pytest.raises(ValueError, match="sigma_grids"):
        check_sampler("euler", euler, sample_euler, sigma_grids=[], x_shape=(3, 2))


# ----------------------------------------------------------------------------- the grading kernel


def test_grading_kernel_reads_its_memory_limit_and_refuses_nonsense():
    from diffusion_internals.course.grading.kernel import MEMORY_ENV, memory_limit_bytes

    assert memory_limit_bytes({}) == 8 * 2**30
    assert memory_limit_bytes({MEMORY_ENV: "2.5"}) == int(2.5 * 2**30)
    for bad in ("0.5", "lots", "nan", "-3"):
        with pytest.raises(ValueError, match=MEMORY_ENV):
            memory_limit_bytes({MEMORY_ENV: bad})


def test_grading_kernel_is_installed_and_is_what_nbgrader_uses():
    import json
    import sys
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader

    from diffusion_internals.course.grading.kernel import KERNEL_NAME

    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    assert spec.is_file(), (
        "make setup installs the grading kernel (python -m diffusion_internals.course.grading.kernel install)"
    )
    argv = json.loads(spec.read_text())["argv"]
    assert argv[1:3] == ["-m", "diffusion_internals.course.grading.kernel"] and "{connection_file}" in argv
    root = Path(__file__).resolve().parents[2]
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    assert config.Execute.kernel_name == KERNEL_NAME or "DIFFUSION_INTERNALS_KERNEL" in __import__("os").environ
