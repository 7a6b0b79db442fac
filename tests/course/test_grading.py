"""The feedback helpers used by the hidden tests: each failure names what was expected and what came out."""
import numpy as np
import pytest
import torch

from diffusion_internals.course.grading import GradingError, check_close, check_equal


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
    assert spec.is_file(), "make setup installs the grading kernel (python -m diffusion_internals.course.grading.kernel install)"
    argv = json.loads(spec.read_text())["argv"]
    assert argv[1:3] == ["-m", "diffusion_internals.course.grading.kernel"] and "{connection_file}" in argv
    root = Path(__file__).resolve().parents[2]
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    assert config.Execute.kernel_name == KERNEL_NAME or "DIFFUSION_INTERNALS_KERNEL" in __import__("os").environ
