"""Quality against NFE of three families of digits models on one sampler and grid; the shift at three sizes.

Chapter 8 reads the two tables this script writes (``make bench`` does not run it; about 20 minutes on one
idle CPU thread):

quality_vs_nfe_families.csv, one row per model, sampler, grid, NFE and seed. The models are the course's
digits U-Nets of one architecture trained for the same number of steps with three objectives: DDPM-style
(``digits-cosine-eps``: eps on the cosine schedule; ``digits-linear-v-zsnr``: v on the linear schedule rescaled
to zero terminal SNR), EDM (``digits-edm``) and rectified flow (``digits-flow``). Every model is sampled through
its denoiser D(x, sigma) by the same sampler on the same grid: Euler (DDIM) and DPM++ 2M on one Karras grid
(rho = 7) from sigma_max = 80 down to the largest of the models' smallest noise levels, from the same initial
noise (``init_noise="vp"``, x = sqrt(1 + 80^2) z, for every model). For context each model is also sampled by
Euler on the grid it is served with ("own"): DDIM with leading timesteps (cosine eps), DDIM with trailing
timesteps from sigma = inf (zero-terminal-SNR v), Euler on EDM's Karras grid [0.002, 80], Euler on the flow grid
(shift 1) from t = 1. 500 samples (50 per class), class-conditional without guidance (guidance_scale 1),
seeds 0, 1, 2 (the seed draws the initial noise). Quality: digits-FID and class accuracy
(``course.evaluation.score``).

quality_vs_nfe_families_shift.csv, one row per image size, shift, NFE and seed: ``digits-flow`` sampled at
8x8 and, through the exact model of the upsampled digits (each pixel repeated k times, k = (size / 8)^2:
D_size(x, sigma) = up(D_8(pool(x), sigma / sqrt(k))), chapter 8), at 16x16 and 32x32, by the flow-matching
Euler sampler on the flow grid with shifts 1/2 to 8; scored after average-pooling back to 8x8 (which the
upsampled model's samples survive exactly).

    python benchmarks/quality_vs_nfe_families.py             # both tables
    python benchmarks/quality_vs_nfe_families.py --only shift
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _results import write_csv  # benchmarks/_results.py, next to this script

from diffusion_internals import sampling
from diffusion_internals.course import checkpoints, evaluation
from diffusion_internals.denoisers import UpsampledDenoiser

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = {  # checkpoint -> family
    "digits-cosine-eps": "DDPM (cosine, eps)",
    "digits-linear-v-zsnr": "DDPM (linear zero-SNR, v)",
    "digits-edm": "EDM",
    "digits-flow": "flow",
}
SIGMA_MAX = 80.0  # Karras et al. 2022's sigma_max, inside every model's training range
OWN_GRID = {  # the Euler-type sampler each model is served with, and its grid
    "digits-cosine-eps": {"sampler": "ddim", "schedule": "leading"},
    "digits-linear-v-zsnr": {"sampler": "ddim", "schedule": "trailing"},
    "digits-edm": {"sampler": "euler", "schedule": "karras"},  # EDMDenoiser's own range, [0.002, 80]
    "digits-flow": {"sampler": "euler", "schedule": "flow"},
}


def shared_sigma_min(denoisers: dict) -> float:
    """The largest of the models' smallest noise levels: a grid every model has been trained down to."""
    return max(float(d.sigma_min) for d in denoisers.values())


def families(args, labels) -> list[dict]:
    denoisers = {name: checkpoints.load_denoiser(name) for name in args.models}
    sigma_min = shared_sigma_min(denoisers)
    print(f"shared Karras grid: sigma from {SIGMA_MAX} to {sigma_min:.6f} (rho 7), then 0", flush=True)
    rows = []
    for name, denoiser in denoisers.items():
        for seed in range(args.seeds):
            for nfe in args.nfe:
                runs = {
                    ("euler", "shared"): dict(
                        sampler="euler", schedule="karras", sigma_min=sigma_min, sigma_max=SIGMA_MAX, init_noise="vp"
                    ),
                    ("dpmpp_2m", "shared"): dict(
                        sampler="dpmpp_2m", schedule="karras", sigma_min=sigma_min, sigma_max=SIGMA_MAX, init_noise="vp"
                    ),
                    (OWN_GRID[name]["sampler"], "own"): dict(OWN_GRID[name]),
                }
                for (sampler, grid), options in runs.items():
                    start = time.perf_counter()
                    images = sampling.sample(
                        denoiser,
                        (len(labels), 1, 8, 8),
                        steps=nfe,
                        generator=torch.Generator().manual_seed(seed),
                        extra_args={"class_labels": labels},
                        **options,
                    )
                    scores = evaluation.score(images, labels, "digits")
                    rows.append(
                        {
                            "model": name,
                            "family": MODELS[name],
                            "sampler": sampler,
                            "grid": grid,
                            "schedule": options["schedule"],
                            "nfe": nfe,
                            "seed": seed,
                            "fid": round(scores["fid"], 3),
                            "accuracy": round(scores["accuracy"], 4),
                            "sigma_min": round(sigma_min, 6) if grid == "shared" else "",
                            "seconds": round(time.perf_counter() - start, 2),
                        }
                    )
                    print(
                        f"{name:>22} {sampler:>9} {grid:>6} NFE {nfe:3d} seed {seed}: FID {scores['fid']:7.2f}, "
                        f"accuracy {scores['accuracy']:.3f}",
                        flush=True,
                    )
    return rows


def shift_study(args, labels) -> list[dict]:
    flow_model = checkpoints.load_denoiser("digits-flow")
    rows = []
    for size in args.sizes:
        denoiser = flow_model if size == 8 else UpsampledDenoiser(flow_model, size // 8)
        for shift in args.shifts:
            for nfe in args.shift_nfe:
                for seed in range(args.seeds):
                    images = sampling.sample(
                        denoiser,
                        (len(labels), 1, size, size),
                        sampler="euler",
                        steps=nfe,
                        schedule="flow",
                        shift=shift,
                        generator=torch.Generator().manual_seed(seed),
                        extra_args={"class_labels": labels},
                    )
                    pooled = F.avg_pool2d(images, size // 8)  # (B, 1, 8, 8)
                    scores = evaluation.score(pooled, labels, "digits")
                    rows.append(
                        {
                            "size": size,
                            "shift": shift,
                            "equivalent_8x8_shift": round(shift * 8 / size, 4),
                            "nfe": nfe,
                            "seed": seed,
                            "fid": round(scores["fid"], 3),
                            "accuracy": round(scores["accuracy"], 4),
                        }
                    )
                    print(
                        f"{size:2d}x{size:<2d} shift {shift:5g} NFE {nfe:3d} seed {seed}: FID {scores['fid']:7.2f}, "
                        f"accuracy {scores['accuracy']:.3f}",
                        flush=True,
                    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["families", "shift"], help="write one of the two tables")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--nfe", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0, 1, ... (at least 2, for a spread)")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--shifts", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--shift-nfe", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--out", type=Path, default=RESULTS / "quality_vs_nfe_families.csv")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 to measure a spread, got {args.seeds}")
    bad = [s for s in args.sizes if s % 8 or s < 8 or not math.log2(s // 8).is_integer()]
    if bad:
        parser.error(f"--sizes must be 8 times a power of 2 (8, 16, 32, ...), got {bad}")
    torch.set_num_threads(1)
    labels = torch.arange(10).repeat_interleave(args.per_class)  # (500,)
    start = time.perf_counter()
    if args.only in (None, "families"):
        write_csv(args.out, families(args, labels))
    if args.only in (None, "shift"):
        write_csv(args.out.with_name(f"{args.out.stem}_shift.csv"), shift_study(args, labels))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
