# ruff: noqa: E501 (the sources are notebook cells, whose docstrings run long)
"""Plausible wrong answers to Project C, each of which must lose the points of exactly one test cell.

Graded in the sandbox by tests/course/test_mistakes.py. MISTAKES = [dict(name, cell, source, fails)],
where `cell` is the grade_id of the solution cell replaced by `source` and `fails` the test cells that must fail.
"""

MISTAKES = [
    dict(
        name="eps_error_by_noise_level reads an x0 prediction as if it were v",
        cell="eps_error",
        source='''@torch.no_grad()
def eps_error_by_noise_level(
    model, x0, noise, alpha_bars, alphas_cumprod, prediction_type="epsilon", class_labels=None
):
    """Eps error (mean squared) of the network at each noise level, told the timestep the schedule gives it; float64 (len(alpha_bars),)."""
    cond = {} if class_labels is None else {"class_labels": class_labels}
    log_snrs = schedules.log_snr(alphas_cumprod)
    errors = []
    for alpha_bar in alpha_bars.tolist():
        x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * noise
        t = int(torch.argmin((log_snrs - math.log(alpha_bar / (1 - alpha_bar))).abs()))
        output = unwrap_output(model(x_t, torch.full((len(x0),), t, dtype=torch.int64), **cond))
        if prediction_type == "epsilon":
            eps_hat = output
        elif prediction_type == "v_prediction":
            eps_hat = eps_from_v(x_t, output, alpha_bar)
        elif prediction_type == "sample":
            eps_hat = eps_from_v(x_t, output, alpha_bar)
        else:
            raise ValueError(f"prediction_type must be one of {list(PREDICTION_TYPES)}, got {prediction_type!r}")
        errors.append(float((eps_hat.double() - noise.double()).pow(2).mean()))
    return torch.tensor(errors, dtype=torch.float64)
''',
        fails=["test_eps_error"],
    ),
    dict(
        name="diagnose reads every network as an eps network (the prediction type is never found)",
        cell="diagnose",
        source='''def diagnose(
    model, config, x0, class_labels, log_snrs=None, seed=0, sampling_steps=50, error_fn=eps_error_by_noise_level
):
    """What the config claims against what the weights measure: schedule, prediction type, null label (Ho & Salimans 2022)."""
    claimed_schedule, claimed_prediction = config["schedule"], config["prediction_type"]
    T = config["num_train_timesteps"]
    alpha_bars = torch.sigmoid(DEFAULT_LOG_SNRS if log_snrs is None else log_snrs)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)
    names = [claimed_schedule] + [name for name in CANDIDATE_SCHEDULES if name != claimed_schedule]
    predictions = [claimed_prediction] + [p for p in PREDICTION_TYPES if p != claimed_prediction]
    abar = {name: checkpoints.alphas_cumprod_for({**config, "schedule": name}) for name in names}
    errors = {
        (name, p): float(error_fn(model, x0, noise, alpha_bars, abar[name], "epsilon", class_labels).mean())
        for name in names
        for p in predictions
    }
    schedule, prediction = min(errors, key=errors.get)
    ratio, null = None, null_label(model)
    if null is not None:
        uncond = error_fn(
            model, x0, noise, alpha_bars, abar[schedule], prediction, torch.full_like(class_labels, null)
        ).mean()
        ratio = float(uncond) / errors[(schedule, prediction)]
    spacing = "trailing" if config.get("zero_snr") else "leading"
    first = int(schedules.inference_timesteps(T, sampling_steps, spacing)[0])
    findings = tuple(
        name
        for name, found in (
            ("schedule", schedule != claimed_schedule),
            ("prediction_type", prediction != claimed_prediction),
            ("label_dropout", ratio is not None and ratio > NULL_RATIO_THRESHOLD),
        )
        if found
    )
    return Diagnosis(
        claimed_schedule=claimed_schedule,
        trained_schedule=schedule,
        claimed_prediction_type=claimed_prediction,
        trained_prediction_type=prediction,
        null_label_ratio=ratio,
        first_step_snr_claimed=float(schedules.snr(abar[claimed_schedule])[first]),
        first_step_snr_trained=float(schedules.snr(abar[schedule])[first]),
        findings=findings,
        errors=errors,
    )
''',
        fails=["test_diagnose"],
    ),
    dict(
        name="results_table without dtype=torch.float64 (float32 values)",
        cell="table",
        source='''def results_table(log, rows, columns):
    """log[row][column] for the rows and columns asked, as a float64 tensor (len(rows), len(columns))."""
    return torch.tensor([[float(log[row][column]) for column in columns] for row in rows])


TABLE = results_table(LOG, ROWS, COLUMNS)
print(f"{'':>52}" + "".join(f"{c:>13}" for c in COLUMNS))
for row, values in zip(ROWS, TABLE.tolist()):
    print(f"{row:>52}" + "".join(f"{v:13.4g}" for v in values))
''',
        fails=["test_table"],
    ),
    dict(
        name="diagnose trusts the model card: no measurement at all",
        cell="diagnose",
        source='''def diagnose(
    model, config, x0, class_labels, log_snrs=None, seed=0, sampling_steps=50, error_fn=eps_error_by_noise_level
):
    """What the config claims against what the weights measure (here: only what it claims)."""
    return Diagnosis(
        claimed_schedule=config["schedule"],
        trained_schedule=config["schedule"],
        claimed_prediction_type=config["prediction_type"],
        trained_prediction_type=config["prediction_type"],
        null_label_ratio=1.0,
        first_step_snr_claimed=0.0,
        first_step_snr_trained=0.0,
        findings=(),
        errors={(s, p): 0.0 for s in CANDIDATE_SCHEDULES for p in PREDICTION_TYPES},
    )
''',
        fails=["test_diagnose"],
    ),
]
