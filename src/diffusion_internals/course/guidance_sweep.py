"""Guidance-scale sweeps: samples at each scale and fix, scored by FID, class accuracy, saturation and clipping.

A sweep answers the question "which guidance scale?" with numbers instead of taste. For each
``guidance_scale`` and each fix of CFG's oversaturation (``FIXES``), draw the same number of samples of every
class from the same initial noise (a fixed seed, so rows differ only by their settings), then report

* ``fid``: digits-FID, the Frechet distance of classifier penultimate features to the test split
  (Heusel et al. 2017);
* ``accuracy``: how often the course classifier finds the requested class;
* for RGB data, ``saturation`` (mean HSV saturation) and ``clipping_fraction`` (values at the range limits),

all from :func:`diffusion_internals.course.evaluation.score`. The CSV column ``scale`` is the guidance scale.

``optimal_scale`` turns the rows into one number by a fixed rule; ``measured`` reads the committed sweep
of a checkpoint; ``python -m diffusion_internals.course.guidance_sweep`` regenerates it (Chapter 5).

Two calibrations are measured with the sweep and recorded in its JSON sidecar (``measured_settings``):

* ``seed_spread``: plain CFG at ``SPREAD_SCALES`` with ``SPREAD_SEEDS`` seeds. ``fid_slack_from_spread``
  turns the largest relative standard deviation of FID over seeds into the band of ``optimal_scale``
  (``measured_fid_slack`` reads it back), so "indistinguishable FID" means "within the measured seed noise";
* ``interval_search``: the guidance interval of the ``"interval"`` fix, measured at ``INTERVAL_SCALE`` over
  ``INTERVAL_CANDIDATES`` (Kynkaanniemi et al. 2024's settings and the ablations that drop guidance at the
  high-noise or the low-noise end) and chosen by ``choose_interval``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from diffusion_internals.course.checkpoints import checkpoint_path, read_training_config
from diffusion_internals.course.data import load_dataset
from diffusion_internals.course.evaluation import reference_features, sample_classes, score
from diffusion_internals.course.models import null_label
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.guidance import APG, CFGDenoiser, check_guidance_scale, in_interval
from diffusion_internals.sampling import SAMPLERS, SCHEDULES, sigmas_for
from diffusion_internals.validation import check_choice, check_int

__all__ = [
    "FIXES",
    "FIX_DEFAULTS",
    "SCALES",
    "COLUMNS",
    "guided",
    "guided_samples",
    "measure",
    "optimal_scale",
    "SPREAD_SCALES",
    "SPREAD_SEEDS",
    "INTERVAL_SCALE",
    "INTERVAL_CANDIDATES",
    "seed_spread",
    "fid_slack_from_spread",
    "guided_steps",
    "choose_interval",
    "measured",
    "measured_settings",
    "measured_fid_slack",
    "pivot",
    "write_sweep",
]

FIXES = ("none", "rescale", "threshold", "interval", "apg")

# The default setting of each fix, as CFGDenoiser keyword arguments; guided(..., **overrides) replaces them.
FIX_DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    # Lin et al. 2024, eqs. 15-16: match the conditional prediction's per-sample std, mixed by phi = 0.7 (their value).
    "rescale": {"rescale": 0.7},
    # Saharia et al. 2022 (Imagen), Sec. 2.3: s = 99.5th percentile of |x0_hat|, clamped to [1, 1.5] (DeepFloyd IF's
    # bound); clip to [-s, s] and divide by s.
    "threshold": {"threshold": 0.995, "threshold_max_value": 1.5},
    # Kynkaanniemi et al. 2024, eq. 2: guide only for sigma in (sigma_lo, sigma_hi]. The interval is a per-model
    # hyperparameter (their EDM2 settings are (0.28, 2.90], (0.19, 1.61], (0.60, 5.00]; (0.28, 5.42] is the one
    # they picked by eye for SD-XL). This one was measured on colour-digits-cosine-eps: the sidecar's
    # interval_search (INTERVAL_CANDIDATES at INTERVAL_SCALE, chosen by choose_interval) records why.
    "interval": {"interval": (0.19, 1.61)},
    # Sadat et al. 2024, Algorithm 1: drop the parallel part (eta = 0), momentum beta = -0.5 (theirs); the norm
    # threshold r = 1 is ours: ||D_c - D_u|| of the colour digits model is about 0.3-3 for sigma in 0.3-3.
    "apg": {"apg": APG(eta=0.0, norm_threshold=1.0, momentum=-0.5)},
}

SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0)  # the committed grid; scale 0 only without a fix
# The seed spread: plain CFG around its optimum, each scale with the sweep's seed and the next four.
SPREAD_SCALES = (1.0, 1.5, 2.0)
SPREAD_SEEDS = 5
# The interval search: candidate intervals (sigma_lo, sigma_hi] at one scale where plain CFG has left its FID band.
INTERVAL_SCALE = 3.0
INTERVAL_CANDIDATES = (
    (0.0, math.inf),  # guidance at every step: plain CFG
    (0.0, 5.42),  # no guidance at high noise only
    (0.28, math.inf),  # no guidance at low noise only
    (0.28, 5.42),  # both ends off: Kynkaanniemi et al.'s SD-XL interval
    (0.28, 2.90),  # their EDM2 intervals
    (0.19, 1.61),
    (0.60, 5.00),
)
COLUMNS = ("scale", "fix", "fid", "accuracy", "saturation", "clipping_fraction")
_CSV_NAME, _JSON_NAME = "guidance_sweep.csv", "guidance_sweep.json"
# The settings of the committed sweeps (measure's defaults): 300 samples, 20 DDIM steps; the 41 rows of the grid
# and the 19 of the calibrations take 30-60 min on one thread (the sidecar records the wall time of each stage).
DEFAULTS = {"per_class": 30, "steps": 20, "sampler": "ddim", "schedule": "leading", "seed": 0}


def _null(denoiser: DiscreteDenoiser) -> int:
    model = getattr(denoiser, "model", None)
    null = null_label(model) if model is not None else None
    if null is None:
        raise ValueError(
            f"denoiser must be a DiscreteDenoiser around a class-conditional network (a num_class_embeds "
            f"config entry, whose last label is the CFG null label); got {type(denoiser).__name__}"
        )
    return null


def _fix_settings(fix: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """FIX_DEFAULTS[fix] with overrides of its own keys (ValueError naming the allowed ones otherwise)."""
    settings = dict(FIX_DEFAULTS[check_choice("fix", fix, FIXES)])
    allowed = set(settings) | ({"threshold_max_value"} if fix == "threshold" else set())
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"fix={fix!r} takes the overrides {sorted(allowed) or 'none'}, got {sorted(unknown)}")
    return {**settings, **overrides}


def guided(denoiser: DiscreteDenoiser, guidance_scale: float, fix: str = "none", **overrides: Any) -> CFGDenoiser:
    """CFG at guidance_scale around a class-conditional denoiser, one fix at its FIX_DEFAULTS (Ho & Salimans 2021)."""
    guidance_scale = check_guidance_scale(guidance_scale)
    settings = _fix_settings(fix, overrides)
    return CFGDenoiser(denoiser, guidance_scale, uncond={"class_labels": torch.tensor([_null(denoiser)])}, **settings)


def guided_samples(
    denoiser: DiscreteDenoiser,
    labels: torch.Tensor,
    guidance_scale: float,
    fix: str = "none",
    *,
    steps: int = DEFAULTS["steps"],
    sampler: str = DEFAULTS["sampler"],
    schedule: str = DEFAULTS["schedule"],
    seed: int = DEFAULTS["seed"],
    progress: bool = False,
    **overrides: Any,
) -> torch.Tensor:
    """Unclipped samples (B, C, H, W) of labels (B,) with guided(denoiser, guidance_scale, fix), noise from `seed`."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64 or len(labels) == 0:
        raise ValueError(
            f"labels must be a non-empty int64 tensor of shape (B,), got {getattr(labels, 'shape', labels)}"
        )
    check_int("steps", steps, minimum=1)
    check_int("seed", seed, minimum=0)
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("schedule", schedule, SCHEDULES)
    settings = _fix_settings(fix, overrides)
    _null(denoiser)  # this module's message for a denoiser without a null label
    return sample_classes(
        denoiser,
        labels,
        guidance_scale=check_guidance_scale(guidance_scale),
        steps=steps,
        sampler=sampler,
        schedule=schedule,
        generator=torch.Generator().manual_seed(seed),
        progress=progress,
        **settings,
    )


@torch.no_grad()
def measure(
    denoiser: DiscreteDenoiser,
    dataset: str,
    guidance_scales: Sequence[float],
    fixes: Sequence[str] = ("none",),
    *,
    per_class: int = DEFAULTS["per_class"],
    steps: int = DEFAULTS["steps"],
    seed: int = DEFAULTS["seed"],
    sampler: str = DEFAULTS["sampler"],
    schedule: str = DEFAULTS["schedule"],
    progress: bool = False,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per (guidance scale, fix): evaluation.score's FID, accuracy, and for RGB saturation and clipping.

    `overrides` replace FIX_DEFAULTS settings of every fix measured (e.g. {"interval": (0.28, 2.9)}).
    """
    if (
        isinstance(guidance_scales, (str, bytes))
        or not isinstance(guidance_scales, Sequence)
        or len(guidance_scales) == 0
    ):
        raise ValueError(f"guidance_scales must be a non-empty sequence of numbers >= 0, got {guidance_scales!r}")
    guidance_scales = [check_guidance_scale(s, name="guidance_scales[i]") for s in guidance_scales]
    if isinstance(fixes, (str, bytes)) or not isinstance(fixes, Sequence) or len(fixes) == 0:
        raise ValueError(f"fixes must be a non-empty sequence of names from {list(FIXES)}, got {fixes!r}")
    fixes = [check_choice("fix", f, FIXES) for f in fixes]
    overrides = dict(overrides or {})
    for fix in fixes:
        _fix_settings(fix, overrides)  # ValueError before any sampling
    check_int("per_class", per_class, minimum=1)
    _null(denoiser)
    reference_features(dataset)  # checks dataset before any sampling (and computes the reference once)
    num_classes = load_dataset(dataset, split="test").num_classes
    labels = torch.arange(num_classes).repeat_interleave(per_class)  # (K * per_class,)
    rows = []
    for fix in fixes:
        for guidance_scale in guidance_scales:
            samples = guided_samples(
                denoiser,
                labels,
                guidance_scale,
                fix,
                steps=steps,
                sampler=sampler,
                schedule=schedule,
                seed=seed,
                progress=progress,
                **overrides,
            )
            scores = score(samples, labels, dataset)
            rows.append(
                {"scale": guidance_scale, "fix": fix, **{key: scores.get(key, math.nan) for key in COLUMNS[2:]}}
            )  # no colour measures: NaN
    return rows


def optimal_scale(
    rows: Sequence[dict[str, Any]], fix: str = "none", *, min_accuracy: float = 0.95, fid_slack: float = 0.1
) -> float:
    """The largest scale with FID within fid_slack of the lowest FID among rows of `fix` reaching min_accuracy."""
    # The rule, deterministic in the rows: keep the rows of this fix whose class accuracy is at least
    # min_accuracy (guidance must deliver the class asked for); among them find the lowest FID, F*; return the
    # largest scale whose FID <= (1 + fid_slack) F*. Most guidance for no measurable loss of fidelity: FIDs
    # within the seed noise of F* are indistinguishable from it. Calibrate fid_slack from a measured seed spread
    # (fid_slack_from_spread; the committed sweep's is measured_fid_slack()); 0.1 is a generic default.
    # A row without a "fix" key counts as fix "none" (a sweep of plain CFG).
    check_choice("fix", fix, FIXES)
    _check_band(min_accuracy, fid_slack)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError(f"rows must be a sequence of dicts with keys {list(COLUMNS[:4])}, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"scale", "fid", "accuracy"} <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with keys scale, fid, accuracy (and fix), got {row!r}")
    mine = [row for row in rows if row.get("fix", "none") == fix]
    if not mine:
        raise ValueError(
            f"rows hold no row with fix={fix!r}; fixes present: {sorted({r.get('fix', 'none') for r in rows})}"
        )
    band = _fid_band(mine, min_accuracy=min_accuracy, fid_slack=fid_slack)
    if not band:
        best = max(float(r["accuracy"]) for r in mine)
        raise ValueError(
            f"no row with fix={fix!r} reaches accuracy >= {min_accuracy} (best {best:.3f}): no scale qualifies"
        )
    return max(float(row["scale"]) for row in band)


def _check_band(min_accuracy: float, fid_slack: float) -> None:
    """The settings of the FID band of optimal_scale and choose_interval, checked."""
    if not isinstance(min_accuracy, (int, float)) or isinstance(min_accuracy, bool) or not 0 <= min_accuracy <= 1:
        raise ValueError(f"min_accuracy must be a number in [0, 1], got {min_accuracy!r}")
    if not isinstance(fid_slack, (int, float)) or isinstance(fid_slack, bool) or not fid_slack >= 0:
        raise ValueError(f"fid_slack must be a number >= 0, got {fid_slack!r}")


def _fid_band(rows: Sequence[dict[str, Any]], *, min_accuracy: float, fid_slack: float) -> list[dict[str, Any]]:
    """The rows reaching min_accuracy whose FID is at most (1 + fid_slack) times the lowest of them (none: [])."""
    eligible = [row for row in rows if float(row["accuracy"]) >= min_accuracy and math.isfinite(float(row["fid"]))]
    if not eligible:
        return []
    best_fid = min(float(row["fid"]) for row in eligible)
    return [row for row in eligible if float(row["fid"]) <= (1 + fid_slack) * best_fid]


def seed_spread(rows: Sequence[dict[str, Any]]) -> dict[float, float]:
    """Relative standard deviation of FID over seeds, std / mean (unbiased std), at each scale of the rows."""
    # rows: one per (scale, seed), as the sidecar's seed_spread["rows"]; at least two seeds per scale.
    by_scale: dict[float, list[float]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"scale", "seed", "fid"} <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with keys scale, seed, fid, got {row!r}")
        by_scale.setdefault(float(row["scale"]), []).append(float(row["fid"]))
    if not by_scale or any(len(fids) < 2 for fids in by_scale.values()):
        raise ValueError(f"rows must hold at least two seeds at every scale, got {len(rows)} rows: {by_scale}")
    return {scale: statistics.stdev(fids) / statistics.fmean(fids) for scale, fids in sorted(by_scale.items())}


def fid_slack_from_spread(spread: dict[float, float], *, n_std: float = 2.0) -> float:
    """optimal_scale's fid_slack: `n_std` times the largest relative seed std of FID, rounded up to 0.01."""
    # Two standard deviations: a row whose FID is within 2 seed stds of the best could have been the best with
    # other noise. The largest spread over the measured scales, so the band holds at each of them.
    if not spread:
        raise ValueError("spread must hold the relative std of at least one scale (seed_spread's result)")
    return math.ceil(round(n_std * max(spread.values()) * 100, 6)) / 100


def guided_steps(sigmas: torch.Tensor, interval: tuple[float, float]) -> int:
    """How many steps of a sampler that evaluates the denoiser at sigmas[:-1] guide inside interval."""
    return int(in_interval(sigmas[:-1], interval).sum())


def choose_interval(
    rows: Sequence[dict[str, Any]], *, fid_slack: float, min_accuracy: float = 0.95
) -> tuple[float, float]:
    """The interval with the fewest guided steps among those within fid_slack of the best FID (Kynkaanniemi 2024)."""
    # rows: one per candidate interval at the same scale and seed, keys interval, guided_steps, fid, accuracy.
    # Intervals whose FID is within the seed noise of the best are indistinguishable; among them the one that
    # guides at the fewest steps costs the fewest network calls (ties: the lower FID).
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"interval", "guided_steps", "fid", "accuracy"} <= set(row):
            raise ValueError(f"rows[{i}] must be a dict with keys interval, guided_steps, fid, accuracy, got {row!r}")
    _check_band(min_accuracy, fid_slack)
    band = _fid_band(rows, min_accuracy=min_accuracy, fid_slack=fid_slack)
    if not band:
        raise ValueError(f"no candidate interval reaches accuracy >= {min_accuracy}: {[r['interval'] for r in rows]}")
    chosen = min(band, key=lambda row: (int(row["guided_steps"]), float(row["fid"])))
    return tuple(float(v) for v in chosen["interval"])


def _sweep_folder(name: str) -> Path:
    return checkpoint_path(name)  # ValueError/FileNotFoundError naming the known checkpoints


def measured(name: str = "colour-digits-cosine-eps") -> list[dict[str, Any]]:
    """The committed sweep of a checkpoint (checkpoints/<name>/guidance_sweep.csv) as rows like measure()'s."""
    path = _sweep_folder(name) / _CSV_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: regenerate it with "
            f"python -m diffusion_internals.course.guidance_sweep --checkpoint {name}"
        )
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} must have the columns {list(COLUMNS)}, got {reader.fieldnames}")
        return [{key: (value if key == "fix" else float(value)) for key, value in row.items()} for row in reader]


def measured_settings(name: str = "colour-digits-cosine-eps") -> dict[str, Any]:
    """The sidecar of the committed sweep: the command, settings, versions and wall time that produced the CSV."""
    path = _sweep_folder(name) / _JSON_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: regenerate it with "
            f"python -m diffusion_internals.course.guidance_sweep --checkpoint {name}"
        )
    return json.loads(path.read_text())


def measured_fid_slack(name: str = "colour-digits-cosine-eps") -> float:
    """The fid_slack calibrated from the committed sweep's seed spread (fid_slack_from_spread of its sidecar)."""
    settings = measured_settings(name)
    if "seed_spread" not in settings:
        raise ValueError(
            f"the sweep of {name} records no seed spread: regenerate it with "
            f"python -m diffusion_internals.course.guidance_sweep --checkpoint {name}"
        )
    return float(settings["seed_spread"]["fid_slack"])


def pivot(rows: Sequence[dict[str, Any]], value: str = "fid", *, digits: int = 3) -> str:
    """A markdown table of one column of the rows, scales down, fixes across ("-" where a pair was not measured)."""
    check_choice("value", value, COLUMNS[2:])
    scales = sorted({float(r["scale"]) for r in rows})
    fixes = [f for f in FIXES if any(r["fix"] == f for r in rows)]
    table = {(float(r["scale"]), r["fix"]): float(r[value]) for r in rows}
    lines = [f"| scale | {' | '.join(fixes)} |", "|" + "---|" * (len(fixes) + 1)]
    for s in scales:
        cells = [_number(table[(s, f)], digits) if (s, f) in table else "-" for f in fixes]
        lines.append(f"| {s:g} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _number(value: float, digits: int) -> str:
    """value to `digits` significant digits, without exponent notation for large values (1013, not 1.01e+03)."""
    return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def write_sweep(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Write rows to a CSV with the columns COLUMNS, numbers rounded to 4 decimals."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (row[k] if k == "fix" else f"{float(row[k]):.4f}") for k in COLUMNS})
    return out


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its measured columns rounded to 4 decimals, as write_sweep writes them."""
    return {k: (round(float(v), 4) if k in COLUMNS[2:] else v) for k, v in row.items()}


def _calibrate(
    denoiser: DiscreteDenoiser, dataset: str, settings: dict[str, Any], grid: list[dict[str, Any]], progress: bool
) -> dict[str, Any]:
    """The seed spread of plain CFG (its grid rows and SPREAD_SEEDS - 1 more seeds) and the interval search."""
    spread_rows = [_rounded({**row, "seed": settings["seed"]}) for row in grid if row["scale"] in SPREAD_SCALES]
    for seed in range(settings["seed"] + 1, settings["seed"] + SPREAD_SEEDS):
        for row in measure(
            denoiser, dataset, SPREAD_SCALES, ("none",), progress=progress, **{**settings, "seed": seed}
        ):
            spread_rows.append(_rounded({**row, "seed": seed}))
    spread = seed_spread(spread_rows)
    fid_slack = fid_slack_from_spread(spread)
    sigmas = sigmas_for(denoiser, settings["steps"], schedule=settings["schedule"])  # (steps + 1,), ends in 0
    search_rows = []
    for interval in INTERVAL_CANDIDATES:
        row = measure(
            denoiser,
            dataset,
            [INTERVAL_SCALE],
            ("interval",),
            progress=progress,
            overrides={"interval": interval},
            **settings,
        )[0]
        search_rows.append(
            _rounded({"interval": list(interval), "guided_steps": guided_steps(sigmas, interval), **row})
        )
    return {
        "seed_spread": {
            "fix": "none",
            "scales": list(SPREAD_SCALES),
            "seeds": sorted({row["seed"] for row in spread_rows}),
            "rows": sorted(spread_rows, key=lambda r: (r["scale"], r["seed"])),
            "relative_std": {f"{scale:g}": round(value, 4) for scale, value in spread.items()},
            "fid_slack": fid_slack,
            "rule": "fid_slack_from_spread: 2 x the largest relative std of FID over seeds, rounded up to 0.01",
        },
        "interval_search": {
            "guidance_scale": INTERVAL_SCALE,
            "seed": settings["seed"],
            "sigmas": [round(float(v), 4) for v in sigmas[:-1]],
            "rows": search_rows,
            "fid_slack": fid_slack,
            "chosen": list(choose_interval(search_rows, fid_slack=fid_slack)),
            "rule": "choose_interval: the fewest guided steps among the intervals within fid_slack of the best FID",
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_internals.course.guidance_sweep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoint", default="colour-digits-cosine-eps")
    parser.add_argument(
        "--out",
        default=None,
        help="CSV path (default: the checkpoint's guidance_sweep.csv); the JSON sidecar goes next to it",
    )
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--fixes", nargs="+", default=list(FIXES), choices=FIXES)
    for key in ("per_class", "steps", "seed"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    parser.add_argument("--sampler", default=DEFAULTS["sampler"], choices=list(SAMPLERS))
    parser.add_argument("--schedule", default=DEFAULTS["schedule"], choices=list(SCHEDULES))
    parser.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the seed spread and the interval search, and guide the interval fix with the chosen "
        "interval (needs fix none among --fixes; --no-calibrate: the grid only, FIX_DEFAULTS as they are)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.calibrate and "none" not in args.fixes:
        parser.error("--calibrate measures the seed spread of plain CFG: include none in --fixes, or --no-calibrate")
    torch.set_num_threads(args.threads)
    from diffusion_internals.course.checkpoints import load_denoiser

    denoiser = load_denoiser(args.checkpoint)
    dataset = read_training_config(args.checkpoint)["dataset"]
    out = Path(args.out) if args.out else _sweep_folder(args.checkpoint) / _CSV_NAME
    settings = {
        "per_class": args.per_class,
        "steps": args.steps,
        "seed": args.seed,
        "sampler": args.sampler,
        "schedule": args.schedule,
    }
    start = time.perf_counter()
    fixes = ["none", *(f for f in args.fixes if f != "none")] if "none" in args.fixes else list(args.fixes)
    rows, calibration, stage_s, overrides = [], {}, {}, {}
    for fix in fixes:  # scale 0 (unconditional) only once, without a fix: the fixes act on guidance
        scales = [s for s in args.scales if s != 0 or fix == "none"]
        rows += measure(
            denoiser, dataset, scales, (fix,), progress=args.progress, overrides=overrides.get(fix), **settings
        )
        stage_s[fix] = round(time.perf_counter() - start - sum(stage_s.values()), 1)
        print(f"{fix}: {len(rows)} rows, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if fix == "none" and args.calibrate:  # before the interval fix, which guides in the chosen interval
            calibration = _calibrate(denoiser, dataset, settings, rows, args.progress)
            overrides["interval"] = {"interval": tuple(calibration["interval_search"]["chosen"])}
            stage_s["calibration"] = round(time.perf_counter() - start - sum(stage_s.values()), 1)
            print(
                f"calibration: fid_slack {calibration['seed_spread']['fid_slack']}, interval "
                f"{calibration['interval_search']['chosen']}, {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    rows.sort(key=lambda r: args.fixes.index(r["fix"]))  # stable: the rows of each fix in the --fixes order
    wall = time.perf_counter() - start
    write_sweep(rows, out)
    fix_settings = {
        f: {k: (v.__dict__ if isinstance(v, APG) else v) for k, v in _fix_settings(f, overrides.get(f, {})).items()}
        for f in args.fixes
    }
    sidecar = {
        "command": "python -m diffusion_internals.course.guidance_sweep "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "checkpoint": args.checkpoint,
        "dataset": dataset,
        "scales": args.scales,
        "fixes": args.fixes,
        "fix_settings": fix_settings,
        **settings,
        **calibration,
        "torch_threads": args.threads,
        "wall_time_s": round(wall, 1),
        "stage_wall_time_s": stage_s,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')} in {wall:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
