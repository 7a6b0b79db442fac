"""End to end: seconds per image of our sampling loop against the diffusers pipeline, same model and sampler.

The committed digits model (digits-linear-eps, class-conditional, guidance 1: one network call per
step) is sampled two ways for each sampler name:

  ours       sampling.sample(DiscreteDenoiser(unet), ...) with the name's sampler on the grid the
             diffusers scheduler uses (the checkpoint's "leading" spacing, or Karras sigmas)
  diffusers  DigitsPipeline with diffusers_compat.diffusers_scheduler(name, ...), diffusers' own loop
  model only the U-Net called as many times on the same batch: the floor both loops stand on

Timing: diffusion_internals.course.tradeoffs.seconds_per_image (one warm-up run, median of --repeats,
synchronised on CUDA). The table gives milliseconds per image, the ratio ours / diffusers, and our
overhead over the network alone, (ours - model only) / ours: the course's target is under 5%.

    python benchmarks/end_to_end.py --batch 50 --steps 20 50 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from _results import write_csv  # benchmarks/_results.py, next to this script

from diffusion_internals import diffusers_compat, sampling
from diffusion_internals.course import checkpoints
from diffusion_internals.course.digits_pipeline import DigitsPipeline
from diffusion_internals.course.tradeoffs import seconds_per_image

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits-linear-eps"
NAMES = ["DDIM", "Euler", "Euler a", "DPM++ 2M Karras", "UniPC"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "end_to_end_cpu.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    pipe = DigitsPipeline.from_checkpoint(MODEL).to(device)
    pipe.set_progress_bar_config(disable=True)
    base = pipe.scheduler.config
    denoiser = checkpoints.load_denoiser(MODEL)
    denoiser.model.to(device)
    labels = (torch.arange(args.batch) % 10).to(device)
    shape = (args.batch, 1, 8, 8)
    rows = []
    for name in NAMES:
        recipe = sampling.resolve(name)
        schedule = "karras" if recipe.schedule == "karras" else "leading"  # the grid of the saved DDIM config
        for steps in args.steps:
            pipe.scheduler = diffusers_compat.diffusers_scheduler(name, base)
            pipe.scheduler.set_timesteps(steps)
            calls = len(pipe.scheduler.timesteps)  # network calls of diffusers' loop (one per timestep here)

            def ours(recipe=recipe, steps=steps, schedule=schedule):  # the loop's values, bound now
                return sampling.sample(
                    denoiser,
                    shape,
                    sampler=recipe.sampler,
                    steps=steps,
                    schedule=schedule,
                    generator=torch.Generator().manual_seed(0),
                    device=device,
                    extra_args={"class_labels": labels},
                    **recipe.options,
                )

            def theirs(steps=steps):
                return pipe(
                    labels, num_inference_steps=steps, guidance_scale=1.0, generator=torch.Generator().manual_seed(0)
                ).images

            x = torch.randn(shape, device=device)
            t = torch.full((args.batch,), 500, device=device)

            @torch.no_grad()
            def model_only(calls=calls, x=x, t=t):
                for _ in range(calls):
                    denoiser.model(x, t, class_labels=labels)

            timing = {
                label: seconds_per_image(fn, args.batch, repeats=args.repeats, device=device)
                for label, fn in (("ours", ours), ("diffusers", theirs), ("model_only", model_only))
            }
            rows.append(
                {
                    "sampler": name,
                    "steps": steps,
                    "network_calls": calls,
                    **{f"{k}_ms_per_image": round(1000 * v, 3) for k, v in timing.items()},
                    "ours_over_diffusers": round(timing["ours"] / timing["diffusers"], 3),
                    "ours_overhead_vs_model": round((timing["ours"] - timing["model_only"]) / timing["ours"], 3),
                    "device": device,
                    "batch": args.batch,
                    "threads": args.threads,
                    "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                }
            )
            r = rows[-1]
            print(
                f"{name:>16} {steps:4d} steps: ours {r['ours_ms_per_image']:7.3f} ms, diffusers "
                f"{r['diffusers_ms_per_image']:7.3f} ms, model only {r['model_only_ms_per_image']:7.3f} ms | "
                f"ours/diffusers {r['ours_over_diffusers']:.2f}, "
                f"our overhead {100 * r['ours_overhead_vs_model']:.1f}%",
                flush=True,
            )
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
