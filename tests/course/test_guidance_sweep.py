"""Guidance sweeps: guided() against hand-built CFG formulas, the optimal-scale rule, and the committed sweep."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest
import torch

from diffusion_internals.course import guidance_sweep as gs
from diffusion_internals.course.checkpoints import load_denoiser, read_training_config
from diffusion_internals.denoisers import GaussianDenoiser
from diffusion_internals.guidance import CFGDenoiser
from diffusion_internals.sampling import sigmas_for

NULL = 3  # the toy model's null label: classes 0-2 and "no class" = 3


class ToyConditional:
    """A class-conditional denoiser with exact Gaussian answers: class c -> N(m_c, s_c^2), null -> N(0, 1)."""

    def __init__(self):
        self.model = SimpleNamespace(config=SimpleNamespace(num_class_embeds=NULL + 1))
        self.classes = [
            GaussianDenoiser(torch.tensor([1.5, -0.5, 0.8]), 0.3),
            GaussianDenoiser(torch.tensor([-1.2, 0.4, 1.0]), 0.5),
            GaussianDenoiser(torch.tensor([0.1, 1.7, -0.9]), 0.2),
        ]
        self.uncond = GaussianDenoiser(torch.zeros(3), 1.0)

    def __call__(self, x, sigma, *, class_labels):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
        rows = [
            (self.uncond if int(c) == NULL else self.classes[int(c)])(x[i : i + 1], sigma[i : i + 1])
            for i, c in enumerate(class_labels)
        ]
        return torch.cat(rows)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture
def toy():
    return ToyConditional()


def both(toy, x, sigma, labels):
    """The conditional and unconditional predictions, computed class by class from the Gaussians (Tweedie)."""
    s = torch.full((len(x),), sigma, dtype=torch.float64)
    d_c = torch.cat([toy.classes[int(c)](x[i : i + 1], s[i : i + 1]) for i, c in enumerate(labels)])
    return d_c, toy.uncond(x, s)


# ---------------------------------------------------------------------------- guided() against the formulas


@pytest.mark.parametrize("guidance_scale", [0.0, 1.0, 4.0])
def test_guided_without_a_fix_is_the_cfg_formula(toy, guidance_scale):
    x, labels, sigma = randn(6, 3, seed=1) * 2, torch.tensor([0, 1, 2, 0, 1, 2]), 1.3
    d_c, d_u = both(toy, x, sigma, labels)
    out = gs.guided(toy, guidance_scale=guidance_scale)(x, sigma, class_labels=labels)
    torch.testing.assert_close(out, d_u + guidance_scale * (d_c - d_u))  # Ho & Salimans 2021, eq. 6, scale = 1 + w


def test_guided_rescale_is_lin_et_al_eqs_15_16(toy):
    x, labels, sigma, scale, phi = randn(6, 3, seed=2) * 2, torch.tensor([0, 1, 2, 2, 1, 0]), 0.9, 5.0, 0.7
    d_c, d_u = both(toy, x, sigma, labels)
    cfg = d_u + scale * (d_c - d_u)
    rescaled = cfg * d_c.std(dim=1, keepdim=True) / cfg.std(dim=1, keepdim=True)  # eq. 15
    expected = phi * rescaled + (1 - phi) * cfg  # eq. 16
    assert gs.FIX_DEFAULTS["rescale"] == {"rescale": phi}
    torch.testing.assert_close(gs.guided(toy, scale, "rescale")(x, sigma, class_labels=labels), expected)


def test_guided_threshold_is_imagen_dynamic_thresholding(toy):
    x, labels, sigma, scale = randn(6, 3, seed=3) * 2, torch.tensor([0, 1, 2, 0, 1, 2]), 2.0, 9.0
    d_c, d_u = both(toy, x, sigma, labels)
    cfg = d_u + scale * (d_c - d_u)
    expected = []
    for row in cfg:  # Saharia et al. 2022, Sec. 2.3, one sample at a time with numpy-style percentile
        s = min(max(float(torch.quantile(row.abs(), 0.995)), 1.0), 1.5)
        expected.append(row.clamp(-s, s) / s)
    out = gs.guided(toy, scale, "threshold")(x, sigma, class_labels=labels)
    torch.testing.assert_close(out, torch.stack(expected))
    assert out.abs().max() <= 1.0 + 1e-12


LO, HI = gs.FIX_DEFAULTS["interval"]["interval"]


@pytest.mark.parametrize(
    "sigma, inside",
    [(LO / 2, False), (LO, False), (LO * 1.01, True), (HI, True), (HI * 1.01, False), (HI * 2, False)],
)
def test_guided_interval_guides_only_inside_the_sigma_interval(toy, sigma, inside):
    x, labels, scale = randn(3, 3, seed=4) * 2, torch.tensor([0, 1, 2]), 6.0
    d_c, d_u = both(toy, x, sigma, labels)
    expected = d_u + scale * (d_c - d_u) if inside else d_c  # Kynkaanniemi et al. 2024, eq. 2: (lo, hi]
    torch.testing.assert_close(gs.guided(toy, scale, "interval")(x, sigma, class_labels=labels), expected)


def test_guided_apg_is_sadat_et_al_algorithm_1(toy):
    x, labels, scale = randn(4, 3, seed=5) * 2, torch.tensor([0, 1, 2, 1]), 4.0
    apg = gs.guided(toy, scale, "apg")
    beta, r = -0.5, 1.0  # the documented defaults: eta = 0, norm threshold 1, momentum -0.5
    running = None
    for sigma in (2.0, 1.0):  # two steps, so that the momentum term is exercised
        d_c, d_u = both(toy, x, sigma, labels)
        diff = d_c - d_u
        running = diff if running is None else diff + beta * running  # eq. 12
        update = running * torch.clamp(r / running.norm(dim=1, keepdim=True), max=1.0)  # eq. 11
        unit = d_c / d_c.norm(dim=1, keepdim=True)
        orthogonal = update - (update * unit).sum(1, keepdim=True) * unit  # eqs. 8-10 with eta = 0
        torch.testing.assert_close(apg(x, sigma, class_labels=labels), d_c + (scale - 1) * orthogonal)


@pytest.mark.parametrize("fix", gs.FIXES)
def test_guided_is_a_cfg_denoiser_with_the_null_label(toy, fix):
    model = gs.guided(toy, 2.0, fix)
    assert isinstance(model, CFGDenoiser)
    assert model.uncond["class_labels"].tolist() == [NULL]


def test_overrides_replace_the_defaults(toy):
    x, labels, sigma = randn(4, 3, seed=6), torch.tensor([0, 1, 2, 0]), 1.0
    torch.testing.assert_close(
        gs.guided(toy, 3.0, "rescale", rescale=0.0)(x, sigma, class_labels=labels),
        gs.guided(toy, 3.0, "none")(x, sigma, class_labels=labels),
    )
    assert gs.guided(toy, 3.0, "interval", interval=(0.5, 2.0)).interval == (0.5, 2.0)


# ---------------------------------------------------------------------------- the optimal-scale rule


def rows_for(fix, table):
    return [
        {"scale": s, "fix": fix, "fid": f, "accuracy": a, "saturation": 0.5, "clipping_fraction": 0.0}
        for s, f, a in table
    ]


def test_optimal_scale_is_the_largest_scale_within_the_fid_band_among_accurate_rows():
    rows = rows_for(
        "none",
        [
            (0, 10.0, 0.1),  # lowest FID, but unguided: fails the accuracy floor
            (1, 50.0, 0.96),
            (1.5, 40.0, 0.98),
            (2, 43.9, 0.99),
            (3, 44.1, 0.99),
            (7, 200.0, 1.0),
        ],
    )
    # Eligible: 1, 1.5, 2, 3, 7; best FID 40; band 44.0; 2 (43.9) is in, 3 (44.1) is out.
    assert gs.optimal_scale(rows) == 2.0
    assert gs.optimal_scale(rows, fid_slack=0.0) == 1.5
    assert gs.optimal_scale(rows, fid_slack=10.0) == 7.0
    assert gs.optimal_scale(rows, min_accuracy=0.0, fid_slack=0.0) == 0.0


def test_optimal_scale_reads_only_the_rows_of_its_fix():
    rows = rows_for("none", [(1, 50.0, 0.99), (3, 90.0, 0.99)]) + rows_for(
        "rescale", [(1, 50.0, 0.99), (3, 51.0, 0.99)]
    )
    assert gs.optimal_scale(rows, "none") == 1.0
    assert gs.optimal_scale(rows, "rescale") == 3.0
    plain = [{k: v for k, v in r.items() if k != "fix"} for r in rows[:2]]
    assert gs.optimal_scale(plain) == 1.0  # rows without a fix are plain CFG
    with pytest.raises(ValueError, match="no row with fix='apg'"):
        gs.optimal_scale(plain, "apg")


def test_optimal_scale_rejects_bad_rows_and_settings():
    rows = rows_for("none", [(1, 50.0, 0.5)])
    with pytest.raises(ValueError, match="accuracy >= 0.95"):
        gs.optimal_scale(rows)
    with pytest.raises(ValueError, match="no row with fix='apg'"):
        gs.optimal_scale(rows, "apg")
    with pytest.raises(ValueError, match="fix must be one of"):
        gs.optimal_scale(rows, "cfg++")
    with pytest.raises(ValueError, match="min_accuracy"):
        gs.optimal_scale(rows, min_accuracy=1.5)
    with pytest.raises(ValueError, match="fid_slack"):
        gs.optimal_scale(rows, fid_slack=-0.1)
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        gs.optimal_scale([{"scale": 1.0}])


def test_seed_spread_is_the_relative_sample_std_per_scale():
    fids = {1.0: [100.0, 110.0, 95.0], 2.0: [70.0, 71.0]}
    rows = [{"scale": s, "seed": i, "fid": f} for s, values in fids.items() for i, f in enumerate(values)]
    spread = gs.seed_spread(rows)
    assert spread.keys() == fids.keys()
    for scale, values in fids.items():  # statistics.stdev: the n - 1 sample standard deviation
        assert spread[scale] == pytest.approx(statistics.stdev(values) / statistics.mean(values), rel=1e-12)
    with pytest.raises(ValueError, match="at least two seeds"):
        gs.seed_spread(rows[:1])
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        gs.seed_spread([{"scale": 1.0, "fid": 3.0}])


def test_fid_slack_is_two_largest_relative_stds_rounded_up():
    assert gs.fid_slack_from_spread({1.0: 0.031, 2.0: 0.052}) == 0.11  # 2 x 0.052 = 0.104 -> 0.11
    assert gs.fid_slack_from_spread({1.0: 0.05}) == 0.10  # exactly 0.1 stays 0.1 (no float round-up to 0.11)
    assert gs.fid_slack_from_spread({1.0: 0.05}, n_std=3.0) == 0.15
    with pytest.raises(ValueError, match="spread"):
        gs.fid_slack_from_spread({})


def test_guided_steps_counts_the_sigmas_inside_the_interval():
    sigmas = torch.tensor([13.0, 6.4, 4.2, 1.0, 0.3, 0.28, 0.1, 0.0], dtype=torch.float64)
    assert gs.guided_steps(sigmas, (0.28, 5.42)) == 3  # 4.2, 1.0, 0.3: 0.28 itself is outside (lo, hi]
    assert gs.guided_steps(sigmas, (0.0, math.inf)) == 7  # every evaluated sigma; the final 0 is not evaluated
    assert gs.guided_steps(sigmas, (0.0, 6.4)) == 6  # 6.4 itself is inside


def test_choose_interval_takes_the_cheapest_within_the_band_of_the_best():
    def row(interval, steps, fid, accuracy=1.0):
        return {"interval": list(interval), "guided_steps": steps, "fid": fid, "accuracy": accuracy}

    rows = [row((0, 9), 20, 100.0), row((0.3, 5), 14, 60.0), row((0.2, 1.6), 10, 65.0), row((0.6, 5), 8, 70.0)]
    assert gs.choose_interval(rows, fid_slack=0.1) == (0.2, 1.6)  # 65 <= 66; 70 > 66
    assert gs.choose_interval(rows, fid_slack=0.2) == (0.6, 5.0)  # the cheapest once 70 <= 72
    assert gs.choose_interval(rows, fid_slack=0.0) == (0.3, 5.0)  # no slack: the best FID
    rows[1]["accuracy"] = 0.5  # the best FID no longer delivers the class: the band moves to 65
    assert gs.choose_interval(rows, fid_slack=0.1) == (0.6, 5.0)
    with pytest.raises(ValueError, match="accuracy"):
        gs.choose_interval([row((0, 1), 3, 1.0, 0.1)], fid_slack=0.1)


def test_pivot_puts_scales_down_and_fixes_across():
    rows = rows_for("none", [(1, 99.44, 0.98), (3, 1013.2, 1.0)]) + rows_for("apg", [(3, 79.6, 1.0)])
    assert gs.pivot(rows, "fid").splitlines() == [
        "| scale | none | apg |",
        "|---|---|---|",
        "| 1 | 99.4 | - |",
        "| 3 | 1013 | 79.6 |",
    ]
    assert gs.pivot(rows, "accuracy").splitlines()[2] == "| 1 | 0.98 | - |"


# ---------------------------------------------------------------------------- argument checks


def test_bad_arguments_name_the_parameter(toy):
    with pytest.raises(ValueError, match="fix must be one of"):
        gs.guided(toy, 2.0, "clip")
    with pytest.raises(ValueError, match="guidance_scale must satisfy value >= 0"):
        gs.guided(toy, -1.0)
    with pytest.raises(ValueError, match="guidance_scale must be a finite real number"):
        gs.guided(toy, float("nan"))
    with pytest.raises(ValueError, match="takes the overrides"):
        gs.guided(toy, 2.0, "none", rescale=0.5)
    with pytest.raises(ValueError, match="class-conditional"):
        gs.guided(GaussianDenoiser(0.0, 1.0), 2.0)
    with pytest.raises(ValueError, match="rescale"):
        gs.guided(toy, 2.0, "rescale", rescale=1.5)  # CFGDenoiser's own check
    with pytest.raises(ValueError, match="value must be one of"):
        gs.pivot([], "speed")


@pytest.fixture(scope="module")
def colour(one_thread):
    return load_denoiser("colour-digits-cosine-eps")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"guidance_scales": []}, "guidance_scales must be a non-empty sequence"),
        ({"guidance_scales": 3.0}, "guidance_scales must be a non-empty sequence"),
        ({"guidance_scales": [1.0, -2.0]}, r"guidance_scales\[i\] must satisfy value >= 0"),
        ({"fixes": "none"}, "fixes must be a non-empty sequence"),
        ({"fixes": ["none", "clip"]}, "fix must be one of"),
        ({"per_class": 0}, "per_class must be an int >= 1"),
        ({"per_class": 2.5}, "per_class must be an int >= 1"),
        ({"dataset": "cifar10"}, "dataset must be one of"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"sampler": "plms"}, "sampler must be one of"),
        ({"schedule": "cosine"}, "schedule must be one of"),
    ],
)
def test_measure_checks_its_arguments(colour, kwargs, match):
    args = {"dataset": "colour_digits", "guidance_scales": [1.0], "per_class": 1, "steps": 1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):  # TypeError: not an int at all (2.5)
        gs.measure(colour, **args)


def test_measure_is_reproducible_and_reports_every_column(colour):
    kwargs = {"per_class": 1, "steps": 2, "seed": 3}
    first = gs.measure(colour, "colour_digits", [1.0, 3.0], ("none", "threshold"), **kwargs)
    again = gs.measure(colour, "colour_digits", [3.0], ("threshold",), **kwargs)
    assert [(r["scale"], r["fix"]) for r in first] == [
        (1.0, "none"),
        (3.0, "none"),
        (1.0, "threshold"),
        (3.0, "threshold"),
    ]
    assert all(set(r) == set(gs.COLUMNS) for r in first)
    assert again[0] == first[3]  # same settings, same numbers: the seed fixes the initial noise


def test_measure_overrides_replace_the_fix_settings(colour):
    kwargs = {"per_class": 1, "steps": 3, "seed": 2}
    plain = gs.measure(colour, "colour_digits", [4.0], ("none",), **kwargs)[0]
    everywhere = gs.measure(
        colour, "colour_digits", [4.0], ("interval",), overrides={"interval": (0, math.inf)}, **kwargs
    )
    nowhere = gs.measure(colour, "colour_digits", [4.0], ("interval",), overrides={"interval": (50, 60)}, **kwargs)
    unguided = gs.measure(colour, "colour_digits", [1.0], ("none",), **kwargs)[0]
    for key in gs.COLUMNS[2:]:  # guiding at every sigma is plain CFG; guiding at none is the conditional model
        assert everywhere[0][key] == pytest.approx(plain[key], rel=1e-6), key
        assert nowhere[0][key] == pytest.approx(unguided[key], rel=1e-6), key
    assert everywhere[0]["fid"] != pytest.approx(nowhere[0]["fid"], rel=1e-3)  # the override did something
    with pytest.raises(ValueError, match="takes the overrides"):
        gs.measure(colour, "colour_digits", [4.0], ("none", "interval"), overrides={"interval": (0, 1)}, **kwargs)


def test_measure_on_grey_digits_has_no_colour_measures(one_thread):
    row = gs.measure(load_denoiser("digits-cosine-eps"), "digits", [1.0], per_class=1, steps=1)[0]
    assert math.isnan(row["saturation"]) and math.isnan(row["clipping_fraction"])
    assert 0.0 <= row["accuracy"] <= 1.0 and row["fid"] >= 0.0


# ---------------------------------------------------------------------------- the committed sweep


def test_the_committed_sweep_covers_the_grid_and_records_its_settings():
    rows = gs.measured()
    settings = gs.measured_settings()
    assert {(r["scale"], r["fix"]) for r in rows} == (
        {(s, f) for s in gs.SCALES if s > 0 for f in gs.FIXES} | {(0.0, "none")}
    )
    assert len(rows) == len(gs.SCALES) * len(gs.FIXES) - len(gs.FIXES) + 1
    for key in ("per_class", "steps", "seed", "sampler", "schedule"):
        assert settings[key] == gs.DEFAULTS[key], key
    assert settings["dataset"] == read_training_config("colour-digits-cosine-eps")["dataset"]
    assert settings["command"].startswith("python -m diffusion_internals.course.guidance_sweep")
    assert settings["wall_time_s"] > 0
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["saturation"] <= 1 and 0 <= row["clipping_fraction"] <= 1
        assert row["fid"] >= 0


def test_the_committed_sweep_agrees_where_fixes_must_agree():
    """At scale 1 guidance is off: rescale, interval and APG must reproduce the unguided row (same noise)."""
    at_one = {r["fix"]: r for r in gs.measured() if r["scale"] == 1.0}
    for fix in ("rescale", "interval", "apg"):
        for key in ("fid", "accuracy", "saturation", "clipping_fraction"):
            assert at_one[fix][key] == pytest.approx(at_one["none"][key], rel=1e-3, abs=1e-3), (fix, key)


def test_the_committed_sweep_records_the_seed_spread_that_calibrates_the_band():
    settings = gs.measured_settings()
    spread = settings["seed_spread"]
    seeds = list(range(settings["seed"], settings["seed"] + gs.SPREAD_SEEDS))
    assert spread["seeds"] == seeds and spread["scales"] == list(gs.SPREAD_SCALES)
    assert {(r["scale"], r["seed"]) for r in spread["rows"]} == {(s, i) for s in gs.SPREAD_SCALES for i in seeds}
    grid = {(r["scale"], r["fix"]): r for r in gs.measured()}
    for row in spread["rows"]:  # the sweep's own seed is the grid row itself
        if row["seed"] == settings["seed"]:
            for key in gs.COLUMNS[2:]:
                assert row[key] == pytest.approx(grid[(row["scale"], "none")][key], abs=1e-4), (row["scale"], key)
    by_scale = {}
    for row in spread["rows"]:
        by_scale.setdefault(row["scale"], []).append(row["fid"])
    for scale, fids in by_scale.items():  # recomputed from the recorded rows with statistics.stdev
        assert len(set(fids)) == len(fids), f"scale {scale}: seeds gave identical FIDs, the seed is not applied"
        relative = statistics.stdev(fids) / statistics.mean(fids)
        assert spread["relative_std"][f"{scale:g}"] == pytest.approx(relative, abs=1e-4)
    expected = math.ceil(round(200 * max(statistics.stdev(f) / statistics.mean(f) for f in by_scale.values()), 6)) / 100
    assert spread["fid_slack"] == expected == gs.measured_fid_slack()
    assert 0 < gs.measured_fid_slack() < 1


def test_the_committed_interval_is_the_measured_choice():
    settings = gs.measured_settings()
    search = settings["interval_search"]
    rows = search["rows"]
    assert [tuple(r["interval"]) for r in rows] == list(gs.INTERVAL_CANDIDATES)
    assert search["guidance_scale"] == gs.INTERVAL_SCALE and search["fid_slack"] == gs.measured_fid_slack()
    sigmas = sigmas_for(load_denoiser("colour-digits-cosine-eps"), settings["steps"], schedule=settings["schedule"])
    assert search["sigmas"] == pytest.approx(sigmas[:-1].tolist(), abs=1e-4)
    for row in rows:  # the guided steps recomputed from the sigma grid of the committed settings
        lo, hi = row["interval"]
        assert row["guided_steps"] == sum(1 for s in sigmas[:-1].tolist() if lo < s <= hi), row["interval"]
    plain = next(r for r in gs.measured() if r["fix"] == "none" and r["scale"] == gs.INTERVAL_SCALE)
    everywhere = next(r for r in rows if tuple(r["interval"]) == (0.0, math.inf))
    for key in gs.COLUMNS[2:]:  # guidance at every sigma is plain CFG: the same noise, the same numbers
        assert everywhere[key] == pytest.approx(plain[key], abs=2e-4), key
    chosen = tuple(search["chosen"])
    assert chosen == gs.choose_interval(rows, fid_slack=search["fid_slack"])
    assert (
        chosen
        == tuple(gs.FIX_DEFAULTS["interval"]["interval"])
        == tuple(settings["fix_settings"]["interval"]["interval"])
    )
    eligible = [r for r in rows if r["accuracy"] >= 0.95]
    best = min(r["fid"] for r in eligible)
    chosen_row = next(r for r in rows if tuple(r["interval"]) == chosen)
    assert chosen_row["fid"] <= (1 + search["fid_slack"]) * best  # within the measured seed noise of the best
    assert all(
        r["guided_steps"] >= chosen_row["guided_steps"]
        for r in eligible
        if r["fid"] <= (1 + search["fid_slack"]) * best
    )


def test_measured_names_the_missing_checkpoint():
    with pytest.raises(FileNotFoundError):
        gs.measured("no-such-checkpoint")
    with pytest.raises(FileNotFoundError, match="regenerate it"):
        gs.measured("digits-linear-eps")  # a checkpoint without a committed sweep


@pytest.mark.slow
def test_two_committed_rows_recompute_at_the_committed_settings(colour):
    settings = gs.measured_settings()
    committed = {(r["scale"], r["fix"]): r for r in gs.measured()}
    kwargs = {k: settings[k] for k in ("per_class", "steps", "seed", "sampler", "schedule")}
    for fix, scale in (("none", 7.0), ("rescale", 3.0), ("interval", 5.0)):  # interval: FIX_DEFAULTS made the rows
        row = gs.measure(colour, settings["dataset"], [scale], (fix,), **kwargs)[0]
        for key in ("fid", "accuracy", "saturation", "clipping_fraction"):
            assert row[key] == pytest.approx(committed[(scale, fix)][key], rel=2e-3, abs=2e-4), (fix, scale, key)
