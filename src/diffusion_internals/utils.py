"""What every module of the core shares: the one shape contract and reproducible per-sample noise.

* The shape contract: ``x`` is ``(B, ...)``, a schedule value is a scalar or ``(B,)``. Every function that
  mixes a per-sample schedule value (``alpha_bar``, ``sigma``, ...) with a batch ``x`` goes through
  :func:`broadcast_like`, so the rule lives in one place.
* Noise: a sampler draws fresh noise at every stochastic step. With one generator for the whole batch,
  sample 3 of a batch of 8 differs from sample 3 of a batch of 4, a long-standing complaint about
  k-diffusion and UIs built on it. Passing one generator per sample (a list, as diffusers allows)
  makes each sample depend on its own seed only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["broadcast_like", "Generators", "randn_like", "per_sample_generators"]


def broadcast_like(value: float | torch.Tensor, x: torch.Tensor, *, name: str = "value") -> torch.Tensor:
    """A scalar, 0-d or (B,) schedule value as float64 (B or 1, 1, ..., 1) for x (B, ...) (k-diffusion append_dims)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension, shape (B, ...); got a 0-d tensor")
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a python number, a 0-d tensor or a (B,) tensor, got {type(value).__name__}")
    # Schedule arithmetic is done in float64 (STYLE habit 2); callers cast the result to x.dtype.
    value = torch.as_tensor(value, dtype=torch.float64, device=x.device)
    if value.ndim == 0:
        return value.reshape((1,) * x.ndim)  # (1, 1, ..., 1)
    if value.ndim != 1 or value.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be a scalar or have shape (B,) = ({x.shape[0]},) to match x of shape "
            f"{tuple(x.shape)}; got shape {tuple(value.shape)}"
        )
    return value.reshape((x.shape[0],) + (1,) * (x.ndim - 1))  # (B,) -> (B, 1, ..., 1)


Generators = torch.Generator | Sequence[torch.Generator] | None


def per_sample_generators(seeds: Sequence[int], *, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One seeded generator per sample, for batch-size-independent sampling."""
    if isinstance(seeds, (int, torch.Tensor)) or len(seeds) == 0:
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def randn_like(x: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """Standard normal noise shaped like x: (B, ...) from one generator, or sample i from generator[i]."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    if not isinstance(generator, Sequence) or not all(isinstance(g, torch.Generator) for g in generator):
        raise TypeError(
            f"generator must be None, one torch.Generator or a list of one per sample (B = {x.shape[0]}), "
            f"got {type(generator).__name__}"
        )
    generators = list(generator)
    if len(generators) != x.shape[0]:
        raise ValueError(
            f"generator must be one torch.Generator or a list of one per sample (B = {x.shape[0]}), "
            f"got a list of {len(generators)}"
        )
    return torch.stack([torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in generators]).to(
        x.device
    )  # (B, ...)
