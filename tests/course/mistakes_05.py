"""Plausible learner mistakes in assignment 05: each replaces one solution cell and must fail exactly `fails`.

Graded in the sandbox by tests/course/test_mistakes.py: every mistake loses the points of
one graded cell, never more, because each test cell grades one function or class on reference inputs.
"""

from __future__ import annotations

_CFG = """
def cfg(uncond, cond, guidance_scale):
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if uncond.shape != cond.shape:
        raise ValueError("uncond and cond must have the same shape")
    return {combine}
"""

_RESCALE = """
def rescale_cfg(guided, cond, phi=0.7):
    if not 0 <= phi <= 1:
        raise ValueError(f"phi must be in [0, 1], got {phi}")
    if guided.shape != cond.shape:
        raise ValueError("guided and cond must have the same shape")
    dims = list(range(1, guided.ndim))
    rescaled = {rescaled}
    return {mix}
"""

_THRESHOLD = """
def dynamic_threshold(x0, percentile=0.995, max_value=1.0):
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    if not max_value >= 1:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    flat = x0.reshape(x0.shape[0], -1)
    s = {s}
    return (flat.clamp(-s, s) / s).reshape(x0.shape)
"""

_GUIDED = """
class GuidedDenoiser:
    def __init__(
        self,
        denoiser,
        guidance_scale,
        null_label,
        rescale=0.0,
        threshold=None,
        max_value=1.0,
        *,
        cfg=cfg,
        rescale_cfg=rescale_cfg,
        dynamic_threshold=dynamic_threshold,
    ):
        self.denoiser, self.guidance_scale, self.null_label = denoiser, guidance_scale, null_label
        self.rescale, self.threshold, self.max_value = rescale, threshold, max_value
        self.cfg, self.rescale_cfg, self.dynamic_threshold = cfg, rescale_cfg, dynamic_threshold

    @torch.no_grad()
    def __call__(self, x, sigma, class_labels):
        uncond = self.denoiser(x, sigma, class_labels=torch.full_like(class_labels, self.null_label))
        cond = self.denoiser(x, sigma, class_labels=class_labels)
        guided = self.cfg(uncond, cond, self.guidance_scale)
        {fixes}
        return guided
"""

_FIXES = """if self.rescale > 0:
            guided = self.rescale_cfg(guided, {against}, self.rescale)
        if self.threshold is not None:
            guided = self.dynamic_threshold(guided, self.threshold, self.max_value)"""

_RULE = """
def choose_scale(rows, min_accuracy=0.95, fid_slack=0.1):
    eligible = [row for row in rows if row["accuracy"] >= min_accuracy]
    if not eligible:
        raise ValueError(f"no row reaches accuracy >= {min_accuracy}")
    {body}
"""

_SWEEP = """
def guidance_sweep(denoiser, null_label, scales, labels, *, steps=20, seed=0, guided=GuidedDenoiser):
    rows = []
    for i, scale in enumerate(scales):
        samples = draw(guided(denoiser, scale, null_label), labels, steps={steps}, seed={seed})
        rows.append({"scale": scale, **score(samples, labels)})
    return rows
"""

MISTAKES: list[dict] = [
    {
        "name": "cfg_with_the_papers_w_as_the_scale",
        "cell": "cfg",
        "source": _CFG.replace("{combine}", "cond + guidance_scale * (cond - uncond)"),
        "fails": {"test_cfg"},
    },
    {
        "name": "cfg_scale_on_the_wrong_difference",
        "cell": "cfg",
        "source": _CFG.replace("{combine}", "uncond + guidance_scale * (uncond - cond)"),
        "fails": {"test_cfg"},
    },
    {
        "name": "rescale_with_one_std_over_the_batch",
        "cell": "rescale",
        "source": _RESCALE.replace("{rescaled}", "guided * (cond.std() / guided.std())").replace(
            "{mix}", "phi * rescaled + (1 - phi) * guided"
        ),
        "fails": {"test_rescale"},
    },
    {
        "name": "rescale_mixing_phi_the_wrong_way_round",
        "cell": "rescale",
        "source": _RESCALE.replace(
            "{rescaled}", "guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))"
        ).replace("{mix}", "(1 - phi) * rescaled + phi * guided"),
        "fails": {"test_rescale"},
    },
    {
        "name": "threshold_percentile_over_the_whole_batch",
        "cell": "threshold",
        "source": _THRESHOLD.replace("{s}", "torch.quantile(flat.abs().flatten(), percentile).clamp(1.0, max_value)"),
        "fails": {"test_threshold"},
    },
    {
        "name": "threshold_without_s_at_least_1",
        "cell": "threshold",
        "source": _THRESHOLD.replace(
            "{s}", "torch.quantile(flat.abs(), percentile, dim=1).clamp(max=max_value)[:, None]"
        ),
        "fails": {"test_threshold"},
    },
    {
        "name": "guided_thresholds_before_rescaling",
        "cell": "guided",
        "source": _GUIDED.replace(
            "{fixes}",
            """if self.threshold is not None:
            guided = self.dynamic_threshold(guided, self.threshold, self.max_value)
        if self.rescale > 0:
            guided = self.rescale_cfg(guided, cond, self.rescale)""",
        ),
        "fails": {"test_guided"},
    },
    {
        "name": "guided_rescales_against_the_unconditional_estimate",
        "cell": "guided",
        "source": _GUIDED.replace("{fixes}", _FIXES.replace("{against}", "uncond")),
        "fails": {"test_guided"},
    },
    {
        "name": "rule_lowest_fid_without_the_slack",
        "cell": "rule",
        "source": _RULE.replace("{body}", 'return float(min(eligible, key=lambda row: row["fid"])["scale"])'),
        "fails": {"test_rule"},
    },
    {
        "name": "rule_band_from_all_rows",
        "cell": "rule",
        "source": _RULE.replace(
            "{body}",
            'best_fid = min(row["fid"] for row in rows)  # the band from every row, eligible or not\n'
            '    return float(max(row["scale"] for row in eligible if row["fid"] <= (1 + fid_slack) * best_fid))',
        ),
        "fails": {"test_rule"},
    },
    {
        "name": "sweep_new_noise_at_every_scale",
        "cell": "sweep",
        "source": _SWEEP.replace("{steps}", "steps").replace("{seed}", "seed + i"),
        "fails": {"test_sweep"},
    },
    {
        "name": "sweep_with_the_notebooks_steps",
        "cell": "sweep",
        "source": _SWEEP.replace("{steps}", "STEPS").replace("{seed}", "seed"),
        "fails": {"test_sweep"},
    },
    {
        "name": "sweep_typed_table",
        "cell": "sweep",
        "source": """
def guidance_sweep(denoiser, null_label, scales, labels, *, steps=20, seed=0, guided=GuidedDenoiser):
    # the numbers of my run, copied from the output
    table = {0.0: (95.2, 0.11), 1.0: (41.3, 0.97), 1.5: (40.1, 0.99), 2.0: (42.8, 1.0), 3.0: (50.6, 1.0)}
    return [
        {"scale": s, "fid": table.get(s, (60.0, 1.0))[0], "accuracy": table.get(s, (60.0, 1.0))[1],
         "class_histogram_max_deviation": 0.02, "saturation": 0.3 + 0.02 * s, "clipping_fraction": 0.01 * s}
        for s in scales
    ]
""",
        "fails": {"test_sweep"},
    },
]
