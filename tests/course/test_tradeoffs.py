"""Timing with warm-up and synchronisation, and the knee of a cost-quality curve.

Oracles: a fake generator that sleeps a known time and logs the order of calls; curves whose knee
is known in closed form (a piecewise-linear curve with one corner; for y = 1/x on [a, b] the point
farthest from the chord after scaling is where the slope equals the chord's).
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from diffusion_internals.course import tradeoffs
from diffusion_internals.course.tradeoffs import knee_index, seconds_per_image


def test_seconds_per_image_warms_up_times_the_median_and_divides(monkeypatch):
    events = []
    durations = iter([0.0, 0.0, 0.03, 0.01, 0.02])  # two warm-ups, then three timed runs

    def generate():
        events.append("run")
        time.sleep(next(durations))

    monkeypatch.setattr(tradeoffs, "synchronize", lambda device: events.append(("sync", device)))
    got = seconds_per_image(generate, 4, warmup=2, repeats=3, device="cuda")
    assert got == pytest.approx(0.02 / 4, rel=0.25)
    # every timed run is followed by a synchronisation before the clock stops
    assert events == ["run", "run", ("sync", "cuda")] + ["run", ("sync", "cuda")] * 3


def test_synchronize_waits_on_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    tradeoffs.synchronize("cpu")
    tradeoffs.synchronize(None)
    assert calls == []
    tradeoffs.synchronize("cuda:0")
    assert calls == ["cuda:0"]


def test_seconds_per_image_names_bad_arguments():
    with pytest.raises(ValueError, match="n_images must be an int >= 1"):
        seconds_per_image(lambda: None, 0)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        seconds_per_image(lambda: None, 1, repeats=0)


def test_knee_of_a_piecewise_linear_curve_is_its_corner():
    cost = [1, 2, 3, 4, 5, 10, 20, 40]
    quality = [100, 80, 60, 40, 20, 19, 18, 17]  # steep until cost 5, then flat
    assert knee_index(cost, quality) == 4
    # the order of the input does not matter: the index refers to the input
    perm = [7, 0, 5, 2, 4, 1, 6, 3]
    assert knee_index([cost[i] for i in perm], [quality[i] for i in perm]) == perm.index(4)


def test_knee_of_a_hyperbola_is_where_its_slope_equals_the_chord():
    a, b = 1.0, 100.0
    x = torch.linspace(a, b, 9901, dtype=torch.float64)  # step 0.01
    y = 1 / x
    # scaled: X = (x - a) / (b - a), Y = (y - 1/b) / (1/a - 1/b); the farthest point from the chord has
    # dY/dX = -1, i.e. (b - a) / (x^2 (1/a - 1/b)) = 1, x = sqrt((b - a) / (1/a - 1/b)) = sqrt(a b).
    assert float(x[knee_index(x, y)]) == pytest.approx(math.sqrt(a * b), abs=0.02)


def test_without_diminishing_returns_the_best_point_is_the_knee():
    assert knee_index([1, 2, 3, 4], [10, 9, 8, 7]) == 3  # a straight line
    assert knee_index([1, 2, 3, 4], [10, 9.9, 9, 1]) == 3  # gains come only at the end
    with pytest.raises(ValueError, match="same length >= 3"):
        knee_index([1, 2], [3, 4])
