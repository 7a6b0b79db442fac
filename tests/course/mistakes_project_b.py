# ruff: noqa: E501 (the sources are notebook cells, whose docstrings run long)
"""Plausible wrong answers to Project B, each of which must lose the points of exactly one test cell.

Graded in the sandbox by tests/course/test_mistakes.py. MISTAKES = [dict(name, cell, source, fails)],
where `cell` is the grade_id of the solution cell replaced by `source` and `fails` the test cells that must fail.
"""

MISTAKES = [
    dict(
        name="seconds_per_image does not synchronize after the warm-up",
        cell="timing",
        source='''def seconds_per_image(generate, n_images, warmup=1, repeats=3, device="cpu", synchronize=synchronize):
    """Median wall time of generate() over `repeats` synchronised runs after `warmup` untimed ones, per image."""
    for _ in range(warmup):
        generate()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / n_images
''',
        fails=["test_timing"],
    ),
    dict(
        name="sweep_table transposed (step counts as rows)",
        cell="tables",
        source='''def sweep_table(log, sampler_names, step_counts, key):
    """log[(name, steps)][key] for the samplers (rows) and step counts (columns) asked, float64 (names, steps)."""
    return torch.tensor([[float(log[(n, s)][key]) for n in sampler_names] for s in step_counts], dtype=torch.float64)


SECONDS = sweep_table(LOG, SAMPLER_NAMES, STEP_COUNTS, "seconds")
FID = sweep_table(LOG, SAMPLER_NAMES, STEP_COUNTS, "fid")
''',
        fails=["test_tables"],
    ),
    dict(
        name="sd_images never switches the scheduler (always the pipeline's own sampler)",
        cell="sd_images",
        source='''def sd_images(prompts, name, steps, seed, pipe=None):
    """Images (B, 3, H, W) in [0, 1], float32 on the CPU, of pipe (None: the tiny pipeline) with the UI sampler `name`."""
    pipe = sd.tiny_pipeline() if pipe is None else pipe
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    images = pipe(
        list(prompts), num_inference_steps=steps, guidance_scale=GUIDANCE, generator=generator, output_type="pt"
    ).images
    return images.float().cpu()
''',
        fails=["test_sd_images"],
    ),
]
