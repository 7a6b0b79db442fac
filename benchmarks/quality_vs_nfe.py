"""Quality against NFE on the committed digits model, for every sampler, with the 1000-step DDPM run as the reference.

digits-cosine-eps, 300 samples (30 per class), no guidance, seed 0. Each sampler runs with the
number of steps that gives the NFE (network evaluations) in the table: Heun, DPM2 and DPM++ 2S a
call the network twice per step, so they get NFE // 2 steps (and are absent below NFE 2). DDPM and
DDIM use diffusers' "leading" timesteps; the other samplers a Karras grid from sigma_max = 80 to the
model's sigma_min (chapter 4: the schedule's own sigma_max, 2.03e4 for the cosine schedule, ruins
an eps-model's first step). Quality: digits-FID (the course classifier's features against the
360-image test split) and class accuracy.

The band. At 300 samples the FID moves with the seed, so "as good as the reference" needs a measured
tolerance, not a chosen one: the reference (DDPM, 1000 steps) runs with seeds 0 to --seeds - 1, and
a FID is within the band when it is at most the reference's mean FID plus K = 2 standard deviations
of its seed-to-seed spread. A sampler whose samples differ from the reference's only by the draw
lands above that line in a few percent of draws (if the FID's spread is roughly normal), so a point above
it is worse than the reference for a reason the seed does not explain. The relative width of the
band, K * sd / mean, is what chapter 4 applies to its own reference. The knee (last column of the
printed table) is the smallest NFE from which on every FID of the sampler stays within the band.

Writes quality_vs_nfe.csv (one row per sampler and NFE, seed 0) and quality_vs_nfe_spread.csv (one
row per reference seed, with the spread and the band derived from them).

    python benchmarks/quality_vs_nfe.py                            # about 15 minutes on one idle CPU thread
    python benchmarks/quality_vs_nfe.py --nfe 5 10 20 50 100 1000  # every sampler at 1000 too, about 40
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _results import write_csv  # benchmarks/_results.py, next to this script

from diffusion_internals import sampling
from diffusion_internals.course import checkpoints, evaluation

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits-cosine-eps"
TWO_CALLS = {"heun", "dpm2", "dpmpp_2s_ancestral"}
SIGMA_MAX = 80.0
K = 2.0  # the band's half-width in standard deviations of the reference FID's seed spread


def band(fids: list[float]) -> dict[str, float]:
    """Mean and seed-to-seed sd of the reference FIDs, the relative band K * sd / mean, and its upper FID."""
    mean, sd = statistics.fmean(fids), statistics.stdev(fids)
    return {"fid_mean": mean, "fid_sd": sd, "k": K, "band": K * sd / mean, "threshold": mean + K * sd}


def knee(fids: dict[int, float], threshold: float) -> int | None:
    """The smallest NFE from which on every FID is at most threshold (None if the last one is above it)."""
    good = [n for n in fids if all(fids[m] <= threshold for m in fids if m >= n)]
    return min(good) if good else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 1000 NFE for every sampler would add about 25 minutes on one CPU thread: pass --nfe ... 1000 for it.
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5, help="reference runs (seeds 0, 1, ...) for the band")
    parser.add_argument("--reference-steps", type=int, default=1000, help="DDPM steps of the reference")
    parser.add_argument("--samplers", nargs="*", default=list(sampling.SAMPLERS), choices=list(sampling.SAMPLERS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality_vs_nfe.csv")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 to measure a spread, got {args.seeds}")
    torch.set_num_threads(1)
    denoiser = checkpoints.load_denoiser(MODEL)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    shape = (len(labels), 1, 8, 8)

    def score(sampler: str, steps: int, seed: int = 0) -> tuple[float, float]:
        grid = dict(schedule="leading") if sampler in ("ddpm", "ddim") else dict(schedule="karras", sigma_max=SIGMA_MAX)
        images = sampling.sample(
            denoiser,
            shape,
            sampler=sampler,
            steps=steps,
            generator=torch.Generator().manual_seed(seed),
            extra_args={"class_labels": labels},
            **grid,
        ).clamp(-1, 1)
        scores = evaluation.score(images, labels, "digits")
        return scores["fid"], scores["accuracy"]

    start = time.perf_counter()
    references = []
    for seed in range(args.seeds):
        fid, accuracy = score("ddpm", args.reference_steps, seed)
        references.append(
            {"reference": f"ddpm, {args.reference_steps} steps", "seed": seed, "fid": fid, "accuracy": accuracy}
        )
        print(
            f"reference: DDPM {args.reference_steps} steps, seed {seed}: digits-FID {fid:.2f}, accuracy {accuracy:.3f}",
            flush=True,
        )
    spread = band([r["fid"] for r in references])
    print(
        f"reference FID over {args.seeds} seeds: mean {spread['fid_mean']:.2f}, sd {spread['fid_sd']:.2f}; "
        f"band: FID <= mean + {K:g} sd = {spread['threshold']:.2f} ({spread['band']:.1%} above the mean)",
        flush=True,
    )
    rows = []
    print(f"{'sampler':>20}" + "".join(f"{n:>9}" for n in args.nfe) + "   knee (NFE)")
    for sampler in args.samplers:
        fids = {}
        for nfe in args.nfe:
            steps = nfe // 2 if sampler in TWO_CALLS else nfe
            if steps < 1:
                continue
            fid, accuracy = score(sampler, steps)
            fids[nfe] = fid
            rows.append(
                {
                    "sampler": sampler,
                    "nfe": nfe,
                    "steps": steps,
                    "fid": round(fid, 3),
                    "accuracy": round(accuracy, 4),
                    "reference_fid": round(spread["fid_mean"], 3),
                    "within_band": fid <= spread["threshold"],
                }
            )
        at = knee(fids, spread["threshold"])
        print(
            f"{sampler:>20}"
            + "".join(f"{fids[n]:9.1f}" if n in fids else f"{'-':>9}" for n in args.nfe)
            + f"   {at if at is not None else 'never'}",
            flush=True,
        )
    write_csv(args.out, rows)
    summary = {key: round(value, 4) for key, value in spread.items()}
    write_csv(
        args.out.with_name(f"{args.out.stem}_spread.csv"),
        [{**r, "fid": round(r["fid"], 3), "accuracy": round(r["accuracy"], 4), **summary} for r in references],
    )
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
