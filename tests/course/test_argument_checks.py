"""The course's counts and guidance scales are checked by the core's one validator of each (issue 18).

Oracle: ``validation.check_int`` and ``guidance.check_guidance_scale`` themselves. A front door that pasted its
own copy of the check says something else for the same bad value (a ValueError where a non-int is a TypeError,
"(0 = unconditional, 1 = no guidance)" where the core says "(1 = no guidance, 0 = unconditional)").
"""

from __future__ import annotations

import pytest
import torch

from diffusion_internals.course import data, evaluation, guidance_sweep, metrics, models, tradeoffs
from diffusion_internals.guidance import check_guidance_scale
from diffusion_internals.sd import bpe
from diffusion_internals.validation import check_int


def message(check, *args, **kwargs) -> tuple[type[Exception], str]:
    with pytest.raises((TypeError, ValueError)) as caught:
        check(*args, **kwargs)
    return caught.type, str(caught.value)


COUNTS = [
    ("n_images", 2.5, 1, lambda: tradeoffs.seconds_per_image(lambda: None, 2.5)),
    ("repeats", 0, 1, lambda: tradeoffs.seconds_per_image(lambda: None, 1, repeats=0)),
    ("n", 2.5, 1, lambda: data.toy_2d("checkerboard", 2.5)),
    ("sample_size", 8.0, 1, lambda: models.class_conditional_unet(sample_size=8.0)),
    ("depth", True, 1, lambda: models.TimestepMLP(depth=True)),
    ("num_class_embeds", 0, 1, lambda: models.TimestepMLP(num_class_embeds=0)),
    ("batch_size", 0.5, 1, lambda: metrics.extract_features(torch.zeros(2, 3), lambda x: x, batch_size=0.5)),
    ("num_merges", 1.5, 0, lambda: bpe.learn_merges(["cat"], 1.5)),
    ("per_class", 2.5, 1, lambda: evaluation.evaluate(None, "digits", per_class=2.5)),
]


@pytest.mark.parametrize(("name", "value", "minimum", "call"), COUNTS, ids=[c[0] for c in COUNTS])
def test_counts_are_checked_by_check_int(name, value, minimum, call):
    expected = message(check_int, name, value, minimum=minimum)
    assert message(call) == expected


def test_guidance_scales_of_the_sweep_are_checked_by_the_core():
    expected = message(check_guidance_scale, -1.0)
    assert message(guidance_sweep.guided, None, -1.0) == expected
