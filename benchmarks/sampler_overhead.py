"""Time per step spent outside the network: our samplers, diffusers' scheduler loops, k-diffusion's samplers.

The network returns a fixed tensor instantly, so what is timed is everything else a sampler does:
the eps -> x0 conversion, the update, the noise. Latents (B, 4, 64, 64) for each batch size B of
`--batch-sizes` (default 1 and 8), float32, CPU. Each sampler
runs `--steps` steps on the grid of its diffusers counterpart (diffusers' own sigmas, ending in 0),
`--repeats` times after one warm-up run, the implementations taking turns in a rotating order; the
table gives the median milliseconds per step (per sigma interval: Heun, DPM2 and DPM++ 2S a call the
network twice in it, diffusers' Heun/DPM2 call step() twice).

Columns:
  ours       sampler(DiscreteDenoiser(eps_model), x, sigmas): the whole loop, as diffusers' is
  ours bare  sampler(D, x, sigmas) with D returning x0 directly: the sampler alone
  diffusers  for t in timesteps: step(model(scale_model_input(x, t), t), t, x)
  k full     k-diffusion sampler around its DiscreteEpsDDPMDenoiser; k bare with D returning x0
Ratios are taken within one run. k-diffusion's SDE samplers get an i.i.d. noise sampler (not the
default Brownian tree) so that all three draw the same kind of noise.

    python benchmarks/sampler_overhead.py --steps 50 --repeats 5 --batch-sizes 1 8

(k-diffusion is imported through diffusion_internals.course.kdiffusion, because its package __init__ needs
extras the course does not install.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import diffusers
import torch
from _results import RESULTS, write_csv  # benchmarks/_results.py, next to this script

from diffusion_internals.course import kdiffusion
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.diffusers_compat import diffusers_sigmas
from diffusion_internals.sampling import SAMPLERS

LATENT = (4, 64, 64)  # (C, H, W): a Stable Diffusion latent at 512x512
SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
# sampler -> (diffusers class, constructor options, k-diffusion function name); None where there is none.
COUNTERPARTS: dict[str, tuple[type | None, dict, str | None]] = {
    "ddim": (diffusers.DDIMScheduler, {"clip_sample": False}, None),
    "ddpm": (diffusers.DDPMScheduler, {"clip_sample": False}, None),
    "euler": (diffusers.EulerDiscreteScheduler, {}, "sample_euler"),
    "euler_ancestral": (diffusers.EulerAncestralDiscreteScheduler, {}, "sample_euler_ancestral"),
    "heun": (diffusers.HeunDiscreteScheduler, {}, "sample_heun"),
    "dpm2": (diffusers.KDPM2DiscreteScheduler, {}, "sample_dpm_2"),
    "lms": (diffusers.LMSDiscreteScheduler, {}, "sample_lms"),
    "dpmpp_2m": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}, "sample_dpmpp_2m"),
    "dpmpp_2s_ancestral": (None, {}, "sample_dpmpp_2s_ancestral"),
    "dpmpp_2m_sde": (
        diffusers.DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++"},
        "sample_dpmpp_2m_sde",
    ),
    "dpmpp_3m_sde": (None, {}, "sample_dpmpp_3m_sde"),
    "unipc": (diffusers.UniPCMultistepScheduler, {}, None),
}
K_NOISY = {"sample_euler_ancestral", "sample_dpmpp_2s_ancestral", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"}


def interleaved_ms_per_step(runs: dict[str, Callable[[], object]], steps: int, repeats: int) -> dict[str, float]:
    """Median wall time per step (ms) of each run, after one warm-up each; the runs take turns within
    every repeat, so a load that comes and goes on the machine hits all of them alike, and the turn order
    rotates from one repeat to the next, so no run always follows the same one (a run that follows a
    heavier one finds colder caches: up to 20% slower here)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(ts) / steps for name, ts in times.items()}


def grid(sampler: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas ending in 0, alphas_cumprod) of the diffusers counterpart's grid, or a DDIM one."""
    cls, options, _ = COUNTERPARTS[sampler]
    scheduler = (cls or diffusers.DDIMScheduler)(**SD, **options)
    scheduler.set_timesteps(steps)
    return diffusers_sigmas(scheduler), scheduler.alphas_cumprod.double()


def measure(sampler: str, steps: int, repeats: int, batch: int) -> dict[str, float | str]:
    """One table row: ms per step of each implementation (nan where there is none), latents (batch, 4, 64, 64)."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(batch, *LATENT, generator=generator)
    fixed = torch.randn(batch, *LATENT, generator=generator) * 0.5  # the "network output", eps or x0

    def eps_model(x_in, t, **cond):
        return fixed

    def bare(x, sigma, **cond):
        return fixed

    sigmas, alphas_cumprod = grid(sampler, steps)
    n = len(sigmas) - 1
    ours_fn = SAMPLERS[sampler]
    denoiser = DiscreteDenoiser(eps_model, alphas_cumprod)
    runs: dict[str, Callable[[], object]] = {
        "ours": lambda: ours_fn(denoiser, z * sigmas[0].item(), sigmas),
        "ours_bare": lambda: ours_fn(bare, z * sigmas[0].item(), sigmas),
    }

    cls, options, k_name = COUNTERPARTS[sampler]
    if cls is not None:
        scheduler = cls(**SD, **options)

        def diffusers_loop():
            scheduler.set_timesteps(steps)
            x = z * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                x = scheduler.step(eps_model(scheduler.scale_model_input(x, t), t), t, x).prev_sample
            return x

        runs["diffusers"] = diffusers_loop
    if k_name is not None:
        k_external = kdiffusion.import_external()
        k_fn = getattr(k_external.sampling, k_name)
        k_denoiser = k_external.DiscreteEpsDDPMDenoiser(eps_model, alphas_cumprod.float(), quantize=False)
        k_sigmas = sigmas.float()
        extra = {"noise_sampler": lambda sigma, sigma_next: torch.randn_like(z)} if k_name in K_NOISY else {}
        runs["k_full"] = lambda: k_fn(k_denoiser, z * k_sigmas[0], k_sigmas, disable=True, **extra)
        runs["k_bare"] = lambda: k_fn(bare, z * k_sigmas[0], k_sigmas, disable=True, **extra)
    nan = float("nan")
    row: dict[str, float | str] = {
        "sampler": sampler,
        "batch": batch,
        "steps": n,
        "diffusers": nan,
        "k_full": nan,
        "k_bare": nan,
    }
    row.update(interleaved_ms_per_step(runs, n, repeats))
    row["ours/diffusers"] = row["ours"] / row["diffusers"]
    row["ours/k_full"] = row["ours"] / row["k_full"]
    row["bare/k_bare"] = row["ours_bare"] / row["k_bare"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    # One thread by default: for a 65k-element latent the per-step cost is dispatch, not arithmetic, and on
    # a shared machine extra intra-op threads contend with other jobs (medians then swing 10-100x).
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="latent batch sizes (default 1 8)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sampler_overhead.csv")
    args = parser.parse_args()
    if args.steps < 2 or args.repeats < 1:
        parser.error(f"--steps must be >= 2 and --repeats >= 1, got {args.steps} and {args.repeats}")
    if any(b < 1 for b in args.batch_sizes):
        parser.error(f"--batch-sizes must all be >= 1, got {args.batch_sizes}")
    torch.set_num_threads(args.threads)

    print(
        f"latents (B, {', '.join(map(str, LATENT))}) float32 for B in {args.batch_sizes}, CPU, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, diffusers {diffusers.__version__}; "
        f"median of {args.repeats} after a warm-up; ms per step"
    )
    columns = [
        "sampler",
        "batch",
        "steps",
        "ours",
        "ours_bare",
        "diffusers",
        "k_full",
        "k_bare",
        "ours/diffusers",
        "ours/k_full",
        "bare/k_bare",
    ]
    print(" ".join(f"{c:>18}" if i == 0 else f"{c:>14}" for i, c in enumerate(columns)))
    rows = []
    with torch.inference_mode():
        for batch in args.batch_sizes:
            for sampler in args.samplers:
                row = measure(sampler, args.steps, args.repeats, batch)
                rows.append(row)
                print(
                    " ".join(
                        f"{row[c]:>18}"
                        if i == 0
                        else (f"{row[c]:>14}" if isinstance(row[c], int) else f"{row[c]:>14.3f}")
                        for i, c in enumerate(columns)
                    )
                )
    write_csv(
        args.out, ({c: (f"{r[c]:.4f}" if isinstance(r[c], float) else r[c]) for c in columns} for r in rows), columns
    )


if __name__ == "__main__":
    main()
