"""Quality against NFE on the committed digits model, for every sampler, with the 1000-step DDPM run as the reference.

digits-cosine-eps, 300 samples (30 per class), no guidance, seed 0. Each sampler runs with the
number of steps that gives the NFE (network evaluations) in the table: Heun, DPM2 and DPM++ 2S a
call the network twice per step, so they get NFE // 2 steps (and are absent below NFE 2). DDPM and
DDIM use diffusers' "leading" timesteps; the other samplers a Karras grid from sigma_max = 80 to the
model's sigma_min (chapter 4: the schedule's own sigma_max, 2.03e4 for the cosine schedule, ruins
an eps-model's first step). Quality: digits-FID (the course classifier's features against the
360-image test split) and class accuracy. The last column is the smallest NFE from which the FID
stays within 10% of the reference.

    python benchmarks/quality_vs_nfe.py                            # about 7 minutes on one CPU thread
    python benchmarks/quality_vs_nfe.py --nfe 5 10 20 50 100 1000  # every sampler at 1000 too, about 30
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 1000 NFE for every sampler would add about 25 minutes on one CPU thread: pass --nfe ... 1000 for it.
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--samplers", nargs="*", default=list(sampling.SAMPLERS), choices=list(sampling.SAMPLERS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality_vs_nfe.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    denoiser = checkpoints.load_denoiser(MODEL)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    shape = (len(labels), 1, 8, 8)

    def score(sampler: str, steps: int) -> tuple[float, float]:
        grid = dict(schedule="leading") if sampler in ("ddpm", "ddim") else dict(schedule="karras", sigma_max=SIGMA_MAX)
        images = sampling.sample(
            denoiser,
            shape,
            sampler=sampler,
            steps=steps,
            generator=torch.Generator().manual_seed(0),
            extra_args={"class_labels": labels},
            **grid,
        ).clamp(-1, 1)
        scores = evaluation.score(images, labels, "digits")
        return scores["fid"], scores["accuracy"]

    start = time.perf_counter()
    reference_fid, reference_accuracy = score("ddpm", 1000)
    print(f"reference: DDPM 1000 steps, digits-FID {reference_fid:.2f}, accuracy {reference_accuracy:.3f}", flush=True)
    rows = []
    print(f"{'sampler':>20}" + "".join(f"{n:>9}" for n in args.nfe) + "   NFE within 10%")
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
                    "reference_fid": round(reference_fid, 3),
                    "within_10pct": fid <= 1.1 * reference_fid,
                }
            )
        good = [n for n in fids if all(fids[m] <= 1.1 * reference_fid for m in fids if m >= n)]
        knee = min(good) if good else None
        print(
            f"{sampler:>20}"
            + "".join(f"{fids[n]:9.1f}" if n in fids else f"{'-':>9}" for n in args.nfe)
            + f"   {knee if knee is not None else 'never'}",
            flush=True,
        )
    write_csv(args.out, rows)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
