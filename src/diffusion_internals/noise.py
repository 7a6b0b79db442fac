"""Gaussian noise that is reproducible per sample.

A sampler draws fresh noise at every stochastic step. With one generator for the whole batch,
sample 3 of a batch of 8 differs from sample 3 of a batch of 4, a long-standing complaint about
k-diffusion and UIs built on it. Passing one generator per sample (a list, as diffusers allows)
makes each sample depend on its own seed only.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Generators", "randn_like", "per_sample_generators"]

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
    generators = list(generator)
    if len(generators) != x.shape[0]:
        raise ValueError(
            f"generator must be one torch.Generator or a list of one per sample (B = {x.shape[0]}), "
            f"got a list of {len(generators)}"
        )
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in generators]
    ).to(x.device)  # (B, ...)
