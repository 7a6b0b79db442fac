"""Denoisers D(x, sigma, **cond) -> x0_hat: the one abstraction every sampler is written against.

Variance-exploding view (Karras et al. 2022, Sec. 2): ``x = x0 + sigma * eps`` with ``x`` of shape
``(B, ...)`` and ``sigma`` a python float, a 0-d tensor or a ``(B,)`` tensor. A denoiser returns an
estimate of ``x0`` with the shape and dtype of ``x``.

* :class:`DiscreteDenoiser` wraps a network trained on a discrete variance-preserving schedule
  (DDPM, Stable Diffusion, a diffusers ``UNet2DModel``) the way k-diffusion's ``external.py`` does.
* :class:`GaussianDenoiser`, :class:`GaussianMixtureDenoiser` and :func:`gaussian_ode_solution` are
  exact: toy data whose ideal denoiser and probability-flow ODE are known in closed form, so every
  sampler and guidance rule can be checked against the truth.

**Pure noise, sigma = inf.** A zero-terminal-SNR schedule (Lin et al. 2024) and a rectified-flow grid
(t = 1) start at sigma = inf, where ``x0 + sigma * eps`` is infinite. There, and only there, ``x`` holds
its finite limit ``x / sqrt(1 + sigma^2) = eps``: the variance-preserving sample at alpha_bar = 0, which
is also the flow sample at t = 1. Every denoiser here accepts ``sigma = inf`` with that meaning (rows of
a batch may mix it with finite levels) and returns the x0 estimate its model makes from pure noise; the
samplers that can step from it are listed in :data:`diffusion_internals.samplers.common.FROM_INFINITY`.

Schedule arithmetic is done in float64; results are cast back to the dtype of ``x``.
:class:`DiscreteDenoiser` keeps float64 for its per-sample coefficients (``t``, ``c_in``, ``c_out``) and
works on the ``(B, ...)`` tensors in the dtype of ``x``, as k-diffusion does: one pass for ``c_in x``, one
for ``x0_hat``. Its network is fed the ``dtype`` it was built with, else the dtype of ``x``, whatever the
wrapped callable is (a module, a function, a guided wrapper).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch

from diffusion_internals.parameterization import PREDICTION_TYPES, denoised_from_prediction
from diffusion_internals.schedules import sigmas_from_alphas_cumprod
from diffusion_internals.utils import randn_like
from diffusion_internals.validation import check_choice, check_decreasing, check_int, check_level, check_tensor

__all__ = [
    "Denoiser",
    "DiscreteDenoiser",
    "unwrap_output",
    "GaussianDenoiser",
    "GaussianMixtureDenoiser",
    "gaussian_ode_solution",
    "UpsampledDenoiser",
]


class Denoiser(Protocol):
    """D(x, sigma, **cond) -> x0_hat with x = x0 + sigma * eps (Karras et al. 2022, eq. 2 and Sec. 3)."""

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond: Any) -> torch.Tensor:
        """Estimate x0 from x of shape (B, ...) at noise level sigma, a scalar or (B,) (Karras et al. 2022, eq. 2)."""
        ...


# ----------------------------------------------------------------------------- shared checks


def _no_cond(owner: str, cond: dict[str, Any]) -> None:
    if cond:
        raise TypeError(f"{owner} takes no conditioning, got keyword arguments {sorted(cond)}")


def _check_event(x: torch.Tensor, event_shape: torch.Size) -> None:
    """Check that a per-sample event of shape event_shape broadcasts to x.shape[1:] without growing it."""
    try:
        ok = torch.broadcast_shapes(event_shape, x.shape[1:]) == x.shape[1:]
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"x of shape {tuple(x.shape)} must be (B, *event_shape) with event_shape "
            f"{tuple(event_shape)} (or one it broadcasts to)"
        )


# ----------------------------------------------------------------------------- discrete-time networks


def unwrap_output(output: Any) -> torch.Tensor:
    """The prediction in a model output: a tensor, diffusers' BaseOutput.sample, or the first of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(getattr(output, "sample", None), torch.Tensor):
        return output.sample
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"model must return a tensor, a tuple of tensors or an object with a .sample tensor, "
        f"got {type(output).__name__}"
    )


def _check_weights(model: Any, dtype: torch.dtype, device: torch.device) -> None:
    """A clear error, before torch's, when an nn.Module's weights are not in the dtype or on the device it is fed."""
    if not isinstance(model, torch.nn.Module):
        return  # a plain function declares nothing: it is fed dtype (or x's) on x's device, as every network
    weight = next((p for p in model.parameters() if p.dtype.is_floating_point), None)
    if weight is not None and weight.dtype != dtype:
        raise ValueError(
            f"the network's weights are {weight.dtype} but it would be fed {dtype}: pass "
            f"DiscreteDenoiser(..., dtype={weight.dtype}) (the sampler's state x may stay in another dtype)"
        )
    if weight is not None and weight.device != device:
        raise ValueError(
            f"the network's weights are on {weight.device} but x is on {device}: sample on the network's device "
            f"(sampling.sample(..., device={str(weight.device)!r})) or move the network"
        )


class DiscreteDenoiser:
    """A discrete-time VP network as a denoiser, c_in = 1/sqrt(1 + sigma^2) (Karras et al. 2022, Table 1)."""

    def __init__(
        self,
        model: Any,
        alphas_cumprod: torch.Tensor,
        *,
        prediction_type: str = "epsilon",
        quantize: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Wrap model(x_in, t, **cond) trained on alphas_cumprod, fed dtype or x's (Ho 2020; Salimans & Ho 2022)."""
        if not callable(model):
            raise TypeError(f"model must be callable as model(x_t, t, **cond), got {type(model).__name__}")
        self.prediction_type = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        if not isinstance(quantize, bool):
            raise ValueError(f"quantize must be True or False, got {quantize!r}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be None (the dtype of x) or a floating-point torch.dtype, got {dtype!r}")
        # Strictly decreasing in [0, 1): only the last entry may be 0 (zero terminal SNR).
        a = check_tensor("alphas_cumprod", alphas_cumprod, lambda a: (a >= 0) & (a < 1), "[0, 1)").detach().cpu()
        if len(a) < 2:
            raise ValueError(f"alphas_cumprod must have at least 2 training steps, got {len(a)}")
        check_decreasing("alphas_cumprod", a)
        self.model = model
        self.quantize = quantize
        self.dtype = dtype
        self.alphas_cumprod = a  # (T,) float64, on the CPU
        self.sigmas = sigmas_from_alphas_cumprod(a)  # (T,) ascending in t; sigmas[-1] = inf at zero terminal SNR
        self.log_sigmas = self.sigmas.log()
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])  # inf for a zero-terminal-SNR schedule: x is then the pure noise

    def sigma_to_t(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """Timestep of sigma, linear in log sigma between neighbours, or the nearest if quantize (k-diffusion)."""
        sigma = check_tensor("sigma", torch.as_tensor(sigma), lambda s: s >= 0, "[0, inf]", one_dim=False)
        return torch.as_tensor(self._t_from_checked_sigma(sigma), device=sigma.device)

    def _t_from_checked_sigma(self, sigma: torch.Tensor) -> np.ndarray:
        """sigma_to_t as a numpy array, for a float64 sigma already known to be >= 0 (__call__ checks it once)."""
        # A handful of values: numpy on the CPU costs a fraction of the same chain of small torch ops.
        log_sigma = sigma.detach().log().cpu().numpy()  # the shape of sigma
        log_sigmas = self.log_sigmas.numpy()  # (T,), ascending
        if self.quantize:  # the nearest training sigma in log sigma; ties go to the lower t, as k-diffusion's argmin
            # low = the last training step with log_sigmas[low] <= log_sigma, kept in [0, T - 2].
            low = np.clip(np.searchsorted(log_sigmas, log_sigma, side="right") - 1, 0, len(log_sigmas) - 2)
            with np.errstate(invalid="ignore"):  # sigma = inf on a zero-terminal-SNR schedule: inf - inf, not nearer
                nearer_low = log_sigma - log_sigmas[low] <= log_sigmas[low + 1] - log_sigma
            return np.where(nearer_low, low, low + 1)
        # Linear in log sigma between neighbours, t clamped to [0, T - 1] outside [sigma_min, sigma_max]. On a
        # zero-terminal-SNR schedule log_sigmas[T - 1] = inf, so the last interval has slope 0: every finite
        # sigma above sigmas[T - 2] gets t = T - 2, and sigma = inf gets t = T - 1.
        return np.asarray(np.interp(log_sigma, log_sigmas, np.arange(len(log_sigmas), dtype=np.float64)))

    def t_to_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        """Sigma at a possibly fractional timestep, linear in log sigma between neighbours (k-diffusion)."""
        t = torch.as_tensor(t)
        last = len(self.sigmas) - 1
        if t.dtype == torch.bool or t.dtype.is_complex or not bool(((t >= 0) & (t <= last)).all()):
            raise ValueError(f"t must be a real number or tensor in [0, {last}], got {t.flatten()[:8].tolist()}")
        log_sigmas = self.log_sigmas.to(t.device)
        if not t.dtype.is_floating_point:
            return log_sigmas[t].exp()
        t = t.to(torch.float64)
        low, high = t.floor().long(), t.ceil().long()
        w = t - low
        # w == 0 is taken directly so that an infinite log sigma (zero terminal SNR) never meets 0 * inf.
        log_sigma = torch.where(w == 0, log_sigmas[low], (1 - w) * log_sigmas[low] + w * log_sigmas[high])
        return log_sigma.exp()

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond: Any) -> torch.Tensor:
        """x0_hat from the network's eps, v or x0 at t = sigma_to_t(sigma) (Karras et al. 2022, eq. 7 and Table 1)."""
        s = check_level("sigma", sigma, x, "[0, inf]")  # float64, (B or 1, 1, ..., 1); inf: x is the pure noise
        dtype = x.dtype if self.dtype is None else self.dtype  # fed to the network, whatever callable it is
        # t is float (k-diffusion's continuous t) or int64 when quantized; diffusers UNets take either.
        # float32 suffices for t <= 1000 in a timestep embedding; float64 networks get float64 t.
        t_dtype = torch.long if self.quantize else (torch.float64 if dtype == torch.float64 else torch.float32)
        t = torch.as_tensor(
            self._t_from_checked_sigma(s.reshape(-1).expand(x.shape[0])), dtype=t_dtype, device=x.device
        )  # (B,)
        # The VP view of the same point: alpha_bar = 1 / (1 + sigma^2) and x_t = c_in x = sqrt(alpha_bar) x.
        # At sigma = inf x already is the VP sample (the module docstring): c_in = 1 there.
        c_in = torch.where(torch.isinf(s), 1.0, (1 + s**2).rsqrt())  # float64, (B or 1, 1, ..., 1)
        x_t = x * c_in.to(x.dtype)  # (B, ...)
        _check_weights(self.model, dtype, x.device)
        output = unwrap_output(self.model(x_t.to(dtype), t, **cond))
        if output.shape != x.shape:
            raise ValueError(
                f"model output has shape {tuple(output.shape)}, expected the shape of x, "
                f"{tuple(x.shape)} (split a learned variance off the channels first)"
            )
        return denoised_from_prediction(self.prediction_type, x, s, output.to(x.dtype))


# ----------------------------------------------------------------------------- exact denoisers for toy data


class GaussianDenoiser:
    """The exact denoiser of x0 ~ N(mean, diag(std^2)), the posterior mean E[x0 | x] (Tweedie; Efron 2011)."""

    def __init__(self, mean: float | torch.Tensor, std: float | torch.Tensor) -> None:
        """mean of the event shape (or a scalar); std > 0 broadcastable to it, a diagonal covariance."""
        self.mean = check_tensor(
            "mean", torch.as_tensor(mean, dtype=torch.float64), torch.isfinite, "(-inf, inf)", one_dim=False
        )
        self.std = check_tensor(
            "std",
            torch.as_tensor(std, dtype=torch.float64),
            lambda v: torch.isfinite(v) & (v > 0),
            "(0, inf)",
            one_dim=False,
        )
        try:
            self.event_shape = torch.broadcast_shapes(self.mean.shape, self.std.shape)
        except RuntimeError:
            raise ValueError(
                f"std of shape {tuple(self.std.shape)} must broadcast with mean of shape {tuple(self.mean.shape)}"
            ) from None

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond: Any) -> torch.Tensor:
        """D(x, sigma) = mean + std^2 / (std^2 + sigma^2) (x - mean) (Tweedie; Karras et al. 2022, eq. 3)."""
        _no_cond("GaussianDenoiser", cond)
        s = check_level("sigma", sigma, x, "[0, inf]")  # float64, (B or 1, 1, ..., 1); inf gives the mean
        _check_event(x, self.event_shape)
        mean, var = self.mean.to(x.device), self.std.to(x.device) ** 2
        return (mean + var / (var + s**2) * (x.to(torch.float64) - mean)).to(x.dtype)

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """n draws x0 = mean + std * z with z ~ N(0, I), of shape (n, *event_shape)."""
        check_int("n", n, minimum=1)
        z = randn_like(torch.empty((n, *self.event_shape), dtype=torch.float64), generator)  # (n, *event_shape)
        return (self.mean + self.std * z).to(dtype)


class GaussianMixtureDenoiser:
    """The exact denoiser of x0 ~ sum_k w_k N(m_k, s_k^2 I), or of one class k (Tweedie; Karras et al. 2022, eq. 3)."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor) -> None:
        """means (K, *event_shape), stds (K,) > 0, weights (K,) > 0 summing to 1 within 1e-6 (never renormalised)."""
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim < 1 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, *event_shape) with K >= 1, got {tuple(means.shape)}")
        num = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        for name, value in (("stds", stds), ("weights", weights)):
            if value.shape != (num,):
                raise ValueError(
                    f"{name} must have shape (K,) = ({num},) to match means of shape "
                    f"{tuple(means.shape)}; got {tuple(value.shape)}"
                )
            if not bool((torch.isfinite(value) & (value > 0)).all()):
                raise ValueError(f"{name} must be finite and > 0, got {value.tolist()}")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite")
        if abs(weights.sum().item() - 1) > 1e-6:
            raise ValueError(
                f"weights must sum to 1 (within 1e-6), got sum {weights.sum().item()!r} "
                f"for {weights.tolist()}; normalise them yourself"
            )
        self.means, self.stds, self.weights = means, stds, weights
        self.event_shape = means.shape[1:]

    def component(self, k: int) -> GaussianDenoiser:
        """The exact denoiser of component k alone, N(m_k, s_k^2 I) (Tweedie; Efron 2011)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.weights):
            raise ValueError(f"k must be an int in [0, {len(self.weights) - 1}], got {k!r}")
        return GaussianDenoiser(self.means[k], self.stds[k])

    def __call__(
        self, x: torch.Tensor, sigma: float | torch.Tensor, *, class_labels: torch.Tensor | None = None, **cond: Any
    ) -> torch.Tensor:
        """sum_k r_k (m_k + s_k^2/(s_k^2+sigma^2)(x - m_k)), r by logsumexp; class k >= 0 sets r = e_k (Tweedie)."""
        _no_cond("GaussianMixtureDenoiser (apart from class_labels)", cond)
        s = check_level("sigma", sigma, x, "[0, inf]")  # float64, (B or 1, 1, ..., 1); inf: r = the prior
        if x.shape[1:] != self.event_shape:
            raise ValueError(
                f"x must have shape (B, *event_shape) = (B, {', '.join(map(str, self.event_shape))}),"
                f" got {tuple(x.shape)}"
            )
        batch = x.shape[0]
        xf = x.to(torch.float64).reshape(batch, 1, -1)  # (B, ...) -> (B, 1, D)
        means = self.means.to(x.device).reshape(1, len(self.weights), -1)  # (K, ...) -> (1, K, D)
        var = self.stds.to(x.device) ** 2 + s.reshape(-1, 1) ** 2  # s_k^2 + sigma^2, (B or 1, K)
        diff = xf - means  # (B, K, D)
        dim = diff.shape[-1]
        # log w_k + log N(x; m_k, (s_k^2 + sigma^2) I): the noised mixture, one Gaussian per component.
        logits = (
            self.weights.to(x.device).log() - 0.5 * diff.pow(2).sum(-1) / var - 0.5 * dim * torch.log(2 * math.pi * var)
        )  # (B, K)
        # At sigma = inf x says nothing about the component: the responsibilities are the weights.
        logits = torch.where(torch.isinf(var), self.weights.to(x.device).log(), logits)
        if class_labels is not None:
            logits = logits.masked_fill(self._class_mask(class_labels, batch, x.device), -math.inf)
        r = torch.softmax(logits, dim=-1)  # responsibilities, exp(logits - logsumexp(logits)), (B, K)
        x0_k = means + (self.stds.to(x.device) ** 2 / var).unsqueeze(-1) * diff  # per-component posterior, (B, K, D)
        return (r.unsqueeze(-1) * x0_k).sum(1).reshape(x.shape).to(x.dtype)  # (B, D) -> (B, ...)

    def _class_mask(self, class_labels: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
        """True where a row's class rules component k out; label -1 keeps the whole mixture. Shape (B, K)."""
        num = len(self.weights)
        y = class_labels
        if (
            not isinstance(y, torch.Tensor)
            or y.dtype.is_floating_point
            or y.dtype == torch.bool
            or y.shape != (batch,)
            or not bool(((y >= -1) & (y < num)).all())
        ):
            got = (
                f"shape {tuple(y.shape)}, dtype {y.dtype}, values {y.tolist()[:8]}"
                if isinstance(y, torch.Tensor)
                else type(y).__name__
            )
            raise ValueError(
                f"class_labels must be None or an integer tensor of shape (B,) = ({batch},) with "
                f"values in [-1, {num - 1}] (-1 = unconditional); got {got}"
            )
        y = y.to(device).reshape(batch, 1)  # (B,) -> (B, 1)
        return (y >= 0) & (y != torch.arange(num, device=device))  # (B, K)

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n draws: labels k ~ Categorical(w), then x0 = m_k + s_k z; returns (x0 (n, ...), labels (n,))."""
        check_int("n", n, minimum=1)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        z = randn_like(torch.empty((n, *self.event_shape), dtype=torch.float64), generator)  # (n, *event_shape)
        std = self.stds[labels].reshape((n,) + (1,) * len(self.event_shape))  # (n,) -> (n, 1, ..., 1)
        return (self.means[labels] + std * z).to(dtype), labels


def gaussian_ode_solution(
    x: torch.Tensor,
    sigma_from: float | torch.Tensor,
    sigma_to: float | torch.Tensor,
    mean: float | torch.Tensor,
    std: float | torch.Tensor,
) -> torch.Tensor:
    """Exact probability-flow ODE map sigma_from -> sigma_to for N(mean, diag(std^2)) data (Karras 2022, eqs. 1, 3)."""
    data = GaussianDenoiser(mean, std)  # checks mean and std
    s_from = check_level("sigma_from", sigma_from, x, "[0, inf]")  # float64, (B or 1, 1, ..., 1); inf: x is eps
    s_to = check_level("sigma_to", sigma_to, x, "[0, inf)")
    _check_event(x, data.event_shape)
    mean, var = data.mean.to(x.device), data.std.to(x.device) ** 2
    # dx/dsigma = (x - D(x, sigma)) / sigma = sigma (x - mean) / (std^2 + sigma^2), so
    # d/dsigma log(x - mean) = d/dsigma log sqrt(std^2 + sigma^2): (x - mean) / sqrt(std^2 + sigma^2) is constant.
    # Its value at sigma = inf is the limit of x / sigma, the pure noise x holds there.
    xf = x.to(torch.float64)
    invariant = torch.where(torch.isinf(s_from), xf, (xf - mean) / torch.sqrt(var + s_from**2))
    return (mean + invariant * torch.sqrt(var + s_to**2)).to(x.dtype)


# ----------------------------------------------------------------------------- data upsampled by repetition


class UpsampledDenoiser:
    """The denoiser of images upsampled by repeating each pixel f x f times, from the denoiser D of the originals.

    Each block of k = f^2 pixels holds one value b, seen as b + sigma eps_i, i = 1..k: the block mean
    b + (sigma / f) eps' is a sufficient statistic, so D_up(x, sigma) = up(D(pool(x), sigma / f)). The same
    noise level destroys less of a larger image: the argument behind the timestep shift of Esser et al.
    (2024, Sec. 5.3.2), exact here. At sigma = inf the pooled pure noise has std 1 / f and is rescaled to 1.
    """

    def __init__(self, denoiser: Denoiser, factor: int) -> None:
        """Wrap denoiser(x, sigma, **cond) of (B, C, H, W) images for their (B, C, f H, f W) upsampled versions."""
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}")
        self.denoiser, self.factor = denoiser, check_int("factor", factor, minimum=1)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, **cond: Any) -> torch.Tensor:
        """up(D(pool(x), sigma / f)), pool the mean over f x f blocks (Esser et al. 2024, Sec. 5.3.2)."""
        f = self.factor
        if x.ndim != 4 or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"x must be (B, C, H, W) with H and W multiples of factor={f}, got {tuple(x.shape)}")
        s = check_level("sigma", sigma, x, "[0, inf]").reshape(-1)  # float64, (B or 1,)
        pooled = torch.nn.functional.avg_pool2d(x, f)  # (B, C, H / f, W / f): x0 + (sigma / f) eps'
        pooled = pooled * torch.where(torch.isinf(s), float(f), 1.0).to(x.dtype).reshape(-1, 1, 1, 1)
        x0_hat = self.denoiser(pooled, (s / f).expand(x.shape[0]), **cond)  # (B, C, H / f, W / f)
        return x0_hat.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)  # (B, C, H, W)
