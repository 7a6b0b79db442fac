"""Stable Diffusion latency per named sampler: seconds per image and per step, on whatever device is present.

What runs, by device (or --model / $DIFFUSION_INTERNALS_SD_MODEL for a real checkpoint):
  GPU  SD 1.5's architecture with random weights (sd.sd15_architecture_pipeline), float16, 512x512:
       the real U-Net, VAE and text encoder, so the times are SD 1.5's (without its safety checker).
  CPU  the tiny pipeline (sd.tiny_pipeline), float32, 64x64: the times measure the mechanics and
       overhead of the pipeline and its schedulers, not Stable Diffusion.
Each sampler is diffusers' scheduler for its UI name (sd.use_sampler); every call is
pipe(prompts, num_inference_steps=steps, guidance_scale=7.5), PIL output, timed by
tradeoffs.seconds_per_image (--warmup untimed runs, median of --repeats, CUDA synchronised).
s/image is a call's time divided by its batch size, and s/step is s/image divided by the steps (both
per image). The summary fits s/image = fixed + steps * marginal over the step counts (fixed: the
text encoder, the VAE decoder, postprocessing).

CLIP score (100 x cosine, sd.clip) of each run's images is computed only when a CLIP checkpoint is
available locally ($DIFFUSION_INTERNALS_CLIP_MODEL or the cache of openai/clip-vit-large-patch14);
otherwise the column says "n/a (no checkpoint)".

    python benchmarks/sd_latency.py            # full grid: 5 samplers x 4 step counts x batch 1 and 4
    python benchmarks/sd_latency.py --quick    # 2 samplers, 10 and 20 steps, batch 1, one repeat
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import diffusers
import torch
from _results import run_script, write_csv  # benchmarks/_results.py, next to this script

from diffusion_internals import sd
from diffusion_internals.course.tradeoffs import seconds_per_image
from diffusion_internals.sampling import NAMED_SAMPLERS
from diffusion_internals.sd.clip import NO_CHECKPOINT, clip_score, load_clip
from diffusion_internals.sd.pipelines import MODEL_ENV

ROOT = Path(__file__).resolve().parents[1]
# UI sampler names (keys of sampling.NAMED_SAMPLERS); the CSV keeps them in its "sampler" column.
NAMES = ["DDIM", "Euler", "Euler a", "DPM++ 2M Karras", "UniPC"]
PROMPTS = [
    "a photo of a cat sitting on a wooden table",
    "an oil painting of a lighthouse at sunset",
    "a watercolor of a red fox in a snowy forest",
    "a cinematic photo of an old city street at night",
]
COLUMNS = [
    "device",
    "device_name",
    "pipeline",
    "dtype",
    "resolution",
    "sampler",
    "steps",
    "batch",
    "s_per_image",
    "s_per_step",
    "clip_score",
]


def build(model: str | None, device: torch.device) -> tuple[object, str]:
    """(pipeline, its label): a named checkpoint, else SD 1.5's architecture on a GPU, else the tiny pipeline."""
    if model is not None:
        return sd.load_pipeline(model, device=device), model
    if device.type == "cuda":
        return sd.sd15_architecture_pipeline(device=device), "sd15-architecture (random weights)"
    return sd.tiny_pipeline().to(device), "tiny (random weights): mechanics/overhead, not SD"


def fit(steps: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed, marginal): least squares s = fixed + steps * marginal."""
    mean_n, mean_s = statistics.fmean(steps), statistics.fmean(seconds)
    var = sum((n - mean_n) ** 2 for n in steps)
    marginal = sum((n - mean_n) * (s - mean_s) for n, s in zip(steps, seconds)) / var if var else float("nan")
    return mean_s - marginal * mean_n, marginal


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=NAMES,
        choices=list(NAMED_SAMPLERS),
        help="UI sampler names (default: %(default)s)",
    )
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 20, 30, 50])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="DDIM and DPM++ 2M Karras, 10 and 20 steps, batch 1, one repeat (a smoke run)",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV) or None,
        help=f"a checkpoint folder or hub id (default: ${MODEL_ENV}, else no checkpoint)",
    )
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    # One thread on the CPU by default, as benchmarks/sampler_overhead.py: steadier medians on a shared machine.
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads on the CPU (default 1)")
    parser.add_argument(
        "--out", type=Path, default=None, help="CSV path (default benchmarks/results/sd_latency_<device>.csv)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.samplers, args.steps, args.batch_sizes, args.repeats = ["DDIM", "DPM++ 2M Karras"], [10, 20], [1], 1
    if min(args.steps) < 1 or min(args.batch_sizes) < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--steps and --batch-sizes must be >= 1, --repeats >= 1 and --warmup >= 0")
    device, dtype = sd.default_device_dtype(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    out = args.out or ROOT / "benchmarks" / "results" / f"sd_latency_{device.type}.csv"

    pipe, label = build(args.model, device)
    pipe.set_progress_bar_config(disable=True)
    dtype = pipe.unet.dtype
    clip = load_clip()
    if clip is not None:
        clip = (clip[0].to(device), clip[1])
    threads = torch.get_num_threads()
    cpu = f"CPU, {threads} thread{'s' * (threads != 1)}"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    height = pipe.unet.config.sample_size * pipe.vae_scale_factor
    print(
        f"pipeline: {label}; {device} ({device_name}), {dtype}, {height}x{height}; torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}; CFG 7.5; median of {args.repeats} after {args.warmup} warm-up"
    )
    print(f"CLIP score: {'100 x cosine, local CLIP checkpoint' if clip else NO_CHECKPOINT}")
    header = f"{'sampler':>16} {'steps':>5} {'batch':>5} {'s/image':>10} {'s/step':>10}  clip score"
    print(header)
    rows = []
    for name in args.samplers:
        sd.use_sampler(pipe, name)
        for batch in args.batch_sizes:
            prompts = (PROMPTS * batch)[:batch]
            for steps in args.steps:
                images = []

                def run(prompts=prompts, steps=steps, images=images) -> None:  # the loop's values, bound now
                    images[:] = pipe(
                        prompts,
                        num_inference_steps=steps,
                        guidance_scale=7.5,
                        generator=torch.Generator().manual_seed(0),
                    ).images

                seconds = seconds_per_image(run, batch, warmup=args.warmup, repeats=args.repeats, device=device)
                score = NO_CHECKPOINT if clip is None else f"{clip_score(images, prompts, clip).mean().item():.2f}"
                row = {
                    "device": device.type,
                    "device_name": device_name,
                    "pipeline": label,
                    "dtype": str(dtype).removeprefix("torch."),
                    "resolution": f"{height}x{height}",
                    "sampler": name,
                    "steps": steps,
                    "batch": batch,
                    "s_per_image": seconds,
                    "s_per_step": seconds / steps,
                    "clip_score": score,
                }
                rows.append(row)
                print(f"{name:>16} {steps:>5} {batch:>5} {seconds:>10.4f} {seconds / steps:>10.5f}  {score}")

    if len(args.steps) > 1:
        print("\nfit over the step counts: s/image = fixed + steps x marginal")
        print(f"{'sampler':>16} {'batch':>5} {'fixed s':>10} {'marginal s/step':>16}")
        for name in args.samplers:
            for batch in args.batch_sizes:
                mine = [r for r in rows if r["sampler"] == name and r["batch"] == batch]
                fixed, marginal = fit([r["steps"] for r in mine], [r["s_per_image"] for r in mine])
                print(f"{name:>16} {batch:>5} {fixed:>10.4f} {marginal:>16.5f}")

    write_csv(
        out,
        ({**r, "s_per_image": f"{r['s_per_image']:.5f}", "s_per_step": f"{r['s_per_step']:.6f}"} for r in rows),
        COLUMNS,
    )
    return rows


if __name__ == "__main__":
    run_script(main)
