"""Plausible wrong answers to Project A, each of which must lose the points of exactly one test cell.

Graded in the sandbox by tests/course/test_mistakes.py. MISTAKES = [dict(name, cell, source, fails)],
where `cell` is the grade_id of the solution cell replaced by `source` and `fails` the test cells that must fail.
"""

MISTAKES = [
    dict(
        name="sqrt schedule started from alpha_bar_0 = 1 instead of 1 - sqrt(s)",
        cell="schedules",
        source="""def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def _betas_from_alpha_bar(alpha_bar, num_steps, max_beta):
    values = alpha_bar(torch.arange(num_steps + 1, dtype=torch.float64) / num_steps)
    return torch.clamp(1 - values[1:] / values[:-1], max=max_beta)


def cosine_betas(num_steps, s=0.008, max_beta=0.999):
    return _betas_from_alpha_bar(lambda tau: torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2, num_steps, max_beta)


def sqrt_betas(num_steps, s=1e-4, max_beta=0.999):
    # Wrong: starts the products from alpha_bar_0 = 1 (a clean image) instead of 1 - sqrt(s).
    tau = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    values = torch.cat([torch.ones(1, dtype=torch.float64), 1 - torch.sqrt(tau[1:] + s)])
    return torch.clamp(1 - values[1:] / values[:-1], max=max_beta)
""",
        fails=["test_sqrt"],
    ),
    dict(
        name="fid_table reads the FIDs by their position in the log, not by their step",
        cell="table",
        source="""def fid_table(study, schedule_names, eval_steps):
    return torch.tensor([[row["fid"] for row in study[name]] for name in schedule_names], dtype=torch.float64)


FID_TABLE = fid_table(STUDY, SCHEDULE_NAMES, EVAL_STEPS)
print(FID_TABLE)
""",
        fails=["test_table"],
    ),
    dict(
        name="frechet_distance with biased covariances (divides by N)",
        cell="frechet",
        source="""def frechet_distance(features_a, features_b):
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T, correction=0), torch.cov(b.T, correction=0)
    w, v = torch.linalg.eigh(cov_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b) @ (mu_a - mu_b) + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_root)
""",
        fails=["test_frechet"],
    ),
]
