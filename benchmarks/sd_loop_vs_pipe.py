"""Our Stable Diffusion loop against diffusers' pipe(...): seconds per image, their ratio, and peak GPU memory.

The same pipeline, prompt, sampler (its diffusers scheduler for pipe(...), sd.use_sampler; our sampler of the same
UI name for sd.generate), step count, guidance scale 7.5, seed and PIL output on both sides; each timed by
tradeoffs.seconds_per_image (warm-up runs untimed, median of the repeats, CUDA synchronised). The pipeline is the
one benchmarks/sd_latency.py builds: SD 1.5's architecture with random weights in float16 at 512x512 on a GPU,
the tiny pipeline on the CPU (its times measure overhead, not Stable Diffusion). Peak memory is CUDA's
max_memory_allocated over a run (empty on the CPU). The goal: ours within 5% of diffusers (ratio <= 1.05).

    python benchmarks/sd_loop_vs_pipe.py                     # DDIM, Euler, Euler a, DPM++ 2M Karras at 20/30/50
    python benchmarks/sd_loop_vs_pipe.py --samplers DDIM --steps 2 --repeats 1 --warmup 0 --out /tmp/x.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _results import run_script, write_csv  # benchmarks/_results.py, next to this script
from sd_latency import COLUMNS as LATENCY_COLUMNS
from sd_latency import PROMPTS, build

from diffusion_internals import sd
from diffusion_internals.course.tradeoffs import seconds_per_image
from diffusion_internals.sampling import NAMED_SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["DDIM", "Euler", "Euler a", "DPM++ 2M Karras"]
GOAL = 1.05  # ours / diffusers
# A run is named as in sd_latency's table (device, pipeline, dtype, resolution, sampler, steps), then both timings.
COLUMNS = [
    *LATENCY_COLUMNS[: LATENCY_COLUMNS.index("steps") + 1],
    "s_per_image_pipe",
    "s_per_image_ours",
    "ratio_ours_pipe",
    "peak_gib_pipe",
    "peak_gib_ours",
]


def timed(run, device: torch.device, warmup: int, repeats: int) -> tuple[float, float | None]:
    """(seconds per image, peak GiB on CUDA or None) of run(), one image per call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = seconds_per_image(run, 1, warmup=warmup, repeats=repeats, device=device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=NAMES, choices=list(NAMED_SAMPLERS))
    parser.add_argument("--steps", nargs="+", type=int, default=[20, 30, 50])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads on the CPU (default 1)")
    parser.add_argument(
        "--out", type=Path, default=None, help="CSV (default benchmarks/results/sd_loop_vs_pipe_<device>.csv)"
    )
    args = parser.parse_args(argv)
    if min(args.steps) < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1, --repeats >= 1 and --warmup >= 0")
    device, _ = sd.default_device_dtype(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    out = args.out or ROOT / "benchmarks" / "results" / f"sd_loop_vs_pipe_{device.type}.csv"
    pipe, label = build(None, device)
    pipe.set_progress_bar_config(disable=True)
    dtype = str(pipe.unet.dtype).removeprefix("torch.")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"pipeline: {label}; {device} ({name}), {dtype}, {size}x{size}; batch 1, CFG 7.5")
    print(f"{'sampler':>16} {'steps':>5} {'pipe s':>9} {'ours s':>9} {'ours/pipe':>9} {'pipe GiB':>9} {'ours GiB':>9}")
    prompt, rows = PROMPTS[:1], []
    for sampler in args.samplers:
        sd.use_sampler(pipe, sampler)
        for steps in args.steps:

            def theirs(steps=steps) -> None:
                pipe(prompt, num_inference_steps=steps, guidance_scale=7.5, generator=torch.Generator().manual_seed(0))

            def ours(steps=steps, sampler=sampler) -> None:
                sd.generate(pipe, prompt, name=sampler, steps=steps, generator=torch.Generator().manual_seed(0))

            s_pipe, peak_pipe = timed(theirs, device, args.warmup, args.repeats)
            s_ours, peak_ours = timed(ours, device, args.warmup, args.repeats)
            gib = [f"{p:.2f}" if p is not None else "" for p in (peak_pipe, peak_ours)]
            rows.append(
                dict(
                    zip(
                        COLUMNS,
                        [device.type, name, label, dtype, f"{size}x{size}", sampler, steps]
                        + [f"{s_pipe:.5f}", f"{s_ours:.5f}", f"{s_ours / s_pipe:.3f}", *gib],
                    )
                )
            )
            ratio = s_ours / s_pipe
            print(f"{sampler:>16} {steps:>5} {s_pipe:>9.4f} {s_ours:>9.4f} {ratio:>9.3f} {gib[0]:>9} {gib[1]:>9}")
    worst = max(float(r["ratio_ours_pipe"]) for r in rows)
    print(f"worst ours/pipe {worst:.3f} (goal <= {GOAL})")
    write_csv(out, rows, COLUMNS)
    return rows


if __name__ == "__main__":
    run_script(main)
