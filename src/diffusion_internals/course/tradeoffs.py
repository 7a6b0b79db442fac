"""Speed against quality: timing a generator fairly, and the knee of a cost-quality curve.

Timing GPU work needs two habits: warm-up runs first (kernel selection, caches, lazy
initialisation), and ``torch.cuda.synchronize`` before reading the clock, because CUDA calls
return as soon as the work is queued. :func:`seconds_per_image` does both and reports the median
of several repeats, which is robust to a stray slow run.

The knee of a curve of quality against cost (FID against seconds per image, say) is where more
cost stops buying much: :func:`knee_index` takes the point farthest below the chord from the
cheapest to the dearest point after scaling both axes to [0, 1], the geometric rule behind
Kneedle (Satopää et al. 2011).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from diffusion_internals.validation import check_int

__all__ = ["synchronize", "seconds_per_image", "knee_index"]


def synchronize(device: str | torch.device | None) -> None:
    """Wait for the queued work of a CUDA (or MPS) device; nothing to wait for on the CPU."""
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def seconds_per_image(
    generate: Callable[[], object],
    n_images: int,
    *,
    warmup: int = 1,
    repeats: int = 3,
    device: str | torch.device | None = None,
) -> float:
    """Median wall time of generate() over `repeats` runs after `warmup` untimed ones, per image; synchronised."""
    check_int("n_images", n_images, minimum=1)
    check_int("warmup", warmup, minimum=0)
    check_int("repeats", repeats, minimum=1)
    for _ in range(warmup):
        generate()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate()
        synchronize(device)  # the clock must not stop while queued GPU work is still running
        times.append(time.perf_counter() - start)
    return statistics.median(times) / n_images


def knee_index(cost: Sequence[float] | torch.Tensor, quality: Sequence[float] | torch.Tensor) -> int:
    """Index of the point farthest below the chord of quality (lower is better) against cost (Satopaa et al. 2011)."""
    c = torch.as_tensor(cost, dtype=torch.float64).reshape(-1)
    q = torch.as_tensor(quality, dtype=torch.float64).reshape(-1)
    if c.shape != q.shape or len(c) < 3:
        raise ValueError(
            f"cost and quality must be sequences of the same length >= 3, got lengths {len(c)} and {len(q)}"
        )
    if not bool(torch.isfinite(c).all() and torch.isfinite(q).all()):
        raise ValueError("cost and quality must be finite numbers")
    order = torch.argsort(c, stable=True)
    x, y = c[order], q[order]
    x = (x - x[0]) / (x[-1] - x[0]) if x[-1] > x[0] else torch.zeros_like(x)
    y = (y - y.min()) / (y.max() - y.min()) if y.max() > y.min() else torch.zeros_like(y)
    chord = y[0] + (y[-1] - y[0]) * x  # the straight line from the cheapest to the dearest point
    below = chord - y  # > 0 where the curve lies below the chord: quality bought cheaply
    if not bool((below > 1e-12).any()):  # no diminishing returns: the best quality is the knee
        return int(order[int(torch.argmin(y))])
    return int(order[int(torch.argmax(below))])
