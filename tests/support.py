"""What the tests share: running course commands, the k-diffusion oracles, toy trained networks.

* Subprocesses: ``ROOT``, ``BIN``, ``run`` for tests that run nbgrader or jupyter-book.
* k-diffusion as an oracle: the tests import it through the course's learner-facing loader,
  ``diffusion_internals.course.kdiffusion`` (``import k_diffusion`` would run its ``__init__``, which pulls in heavy
  extras). k-diffusion is a declared test dependency: if it is missing the loader raises (ImportError with the
  install command), the tests do not skip.
* Toy "trained networks" built from an exact denoiser, written independently of
  ``diffusion_internals.denoisers.DiscreteDenoiser``. A perfect network trained on a VP schedule with training
  sigmas ``sigma_t = sqrt((1 - abar_t) / abar_t)`` sees ``x_in = x / sqrt(1 + sigma_t^2)`` (x = x0 + sigma_t eps)
  and predicts eps = (x - D(x, sigma_t)) / sigma_t, v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0_hat (Salimans & Ho
  2022, Sec. 4) or x0 = D(x, sigma_t). Fractional ``t`` maps to sigma linearly in log sigma between neighbouring
  training steps (k-diffusion's DiscreteSchedule.t_to_sigma); integer ``t`` indexes the schedule.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def course_env() -> dict[str, str]:
    """The environment for subprocesses: the course's bin first, a quiet, offline hub."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command, returning its result; the output is kept for assertion messages."""
    return subprocess.run(cmd, cwd=cwd, env=course_env(), capture_output=True, text=True, timeout=timeout, check=False)


TARGETS = ("epsilon", "v_prediction", "sample")


def _sigma_at(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Training sigma at integer t, or log-linear between the neighbours of fractional t; float64 (B,)."""
    a = alphas_cumprod.to(torch.float64)
    sigmas = ((1 - a) / a).sqrt()  # (T,)
    t = torch.as_tensor(t).to("cpu")
    if not t.dtype.is_floating_point:
        return sigmas[t]
    t = t.to(torch.float64)
    low = t.floor().long()
    high = t.ceil().long()
    frac = t - low
    log_sigma = torch.where(low == high, sigmas[low].log(), (1 - frac) * sigmas[low].log() + frac * sigmas[high].log())
    return log_sigma.exp()


def model_from_denoiser(
    denoiser: Callable[..., torch.Tensor], alphas_cumprod: torch.Tensor, *, prediction_type: str = "epsilon"
) -> Callable[..., torch.Tensor]:
    """A perfect discrete-time network model(x_in, t, **cond) -> eps, v or x0 for the data of an exact denoiser."""
    if prediction_type not in TARGETS:
        raise ValueError(f"prediction_type must be one of {list(TARGETS)}, got {prediction_type!r}")

    def model(x_in: torch.Tensor, t: torch.Tensor, **cond: Any) -> torch.Tensor:
        sigma = _sigma_at(t, alphas_cumprod).to(x_in.device).reshape(-1).expand(x_in.shape[0])  # (B,)
        s = sigma.reshape((-1,) + (1,) * (x_in.ndim - 1))  # (B,) -> (B, 1, ..., 1)
        inf = torch.isinf(s)
        # Back to the VE view; at sigma = inf (alpha_bar = 0) the denoiser's x is the VP sample itself, pure noise.
        x = torch.where(inf, x_in.to(torch.float64), x_in.to(torch.float64) * (1 + s**2).sqrt())
        x0 = denoiser(x, sigma, **cond).to(torch.float64)
        if prediction_type == "sample":
            return x0.to(x_in.dtype)
        eps = torch.where(inf, x_in.to(torch.float64), (x - x0) / s)  # at alpha_bar = 0, x_t = eps
        if prediction_type == "epsilon":
            return eps.to(x_in.dtype)
        abar = torch.where(inf, 0.0, 1 / (1 + s**2))
        return (abar.sqrt() * eps - (1 - abar).sqrt() * x0).to(x_in.dtype)

    return model


def eps_model_from_denoiser(
    denoiser: Callable[..., torch.Tensor], alphas_cumprod: torch.Tensor
) -> Callable[..., torch.Tensor]:
    """A perfect eps network: eps(x_in, t, **cond) = (x - D(x, sigma_t)) / sigma_t with x = x_in sqrt(1 + sigma_t^2)."""
    return model_from_denoiser(denoiser, alphas_cumprod, prediction_type="epsilon")


def sandbox_problem() -> str | None:
    """Why the grader's sandbox cannot run here (None if it can): bubblewrap missing, or no cgroups."""
    from diffusion_internals.course.grading.sandbox import limits_available, sandbox_problem

    return limits_available() or sandbox_problem()


def load_file(path: Path):
    """A Python file that is not on the import path (a script, a test-data generator, a deploy helper) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_check_dist():
    """scripts/check_dist.py (what `make dist` runs) as a module: its git_files lists what a commit would hold."""
    return load_file(ROOT / "scripts" / "check_dist.py")


def require_tools(problem: str | None) -> None:
    """Skip a test whose system programs are missing (``problem`` names them and the install command; None when
    all are there), except in CI (CI=true or 1): .ci/run installs them there, so the test must run and fails."""
    import pytest

    if problem and os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{problem}. CI={os.environ['CI']}: this test must run here (.ci/run installs them)")
    if problem:
        pytest.skip(problem)


def requires_sandbox():
    """Skip a test that grades in the sandbox on a machine without it, with the install hint.

    CI installs bubblewrap (.ci/run) and sets DIFFUSION_INTERNALS_REQUIRE_SANDBOX=1: there, a sandbox that does
    not work fails these tests with its reason instead of skipping them.
    """
    import pytest

    if os.environ.get("DIFFUSION_INTERNALS_REQUIRE_SANDBOX") == "1":
        return pytest.mark.skipif(False, reason="the sandbox is required here")
    problem = sandbox_problem()
    return pytest.mark.skipif(problem is not None, reason=f"the grader's sandbox is unavailable: {problem}")
