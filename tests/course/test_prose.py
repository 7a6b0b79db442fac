"""The chapters' prose helpers: glued values are plain Python numbers, claims stop the page, powers of ten."""

from __future__ import annotations

import myst_nb
import numpy as np
import pytest
import torch

from diffusion_internals.course import prose


def test_glue_values_hands_plain_python_numbers_to_glue(monkeypatch):
    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update({name: (value, display)}))
    prose.glue_values(a=np.float64(1.5), b=torch.tensor(3), c="linear", d=[1, 2], e=np.int64(7))
    assert glued == {"a": (1.5, False), "b": (3, False), "c": ("linear", False), "d": ([1, 2], False), "e": (7, False)}
    assert type(glued["a"][0]) is float and type(glued["b"][0]) is int and type(glued["e"][0]) is int
    assert f"{glued['a'][0]:.2f}" == "1.50"  # what {glue:text}`a:.2f` does; np.float64's repr would not parse


def test_claim_passes_silently_and_stops_the_page_naming_the_sentence():
    prose.claim(2 < 3, "two is less than three")
    prose.claim(np.float64(2) < 3, "a numpy comparison is a bool too")
    prose.claim(torch.tensor(2.0) < 3, "and a torch one")
    with pytest.raises(TypeError, match="holds must be a bool"):
        prose.claim([0], "a non-empty list is not a verdict")
    with pytest.raises(AssertionError, match="the text says that DDIM beats DDPM"):
        prose.claim(False, "DDIM beats DDPM")


@pytest.mark.parametrize(
    "x, digits, text",
    [
        (2.03e4, 3, "2.03 · 10⁴"),
        (2.4e-9, 2, "2.4 · 10⁻⁹"),
        (9.996e3, 3, "1.00 · 10⁴"),
        (0.1, 2, "1.0 · 10⁻¹"),
        (-0.0064, 2, "-6.4 · 10⁻³"),
        (3e-5, 1, "3 · 10⁻⁵"),
    ],
)
def test_times_ten_writes_scientific_notation(x, digits, text):
    assert prose.times_ten(x, digits) == text


def test_times_ten_refuses_zero_and_non_finite():
    for x in (0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite non-zero"):
            prose.times_ten(x)
    for digits in (0, -1, 2.5):
        with pytest.raises(ValueError, match="digits"):
            prose.times_ten(1.5, digits)
