"""Plausible learner mistakes for assignment 01 (the forward process), each losing the points of exactly one test cell.

Each entry replaces the solution cell `cell` of solutions/01_forward_process/forward_process.ipynb by `source`
(what a learner might write) and names the test cells that must fail (`fails`). Graded in the sandbox,
once per mistake, by tests/course/test_mistakes.py.
"""

LINEAR = """def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
"""
SCALED = """def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
"""
COSINE = "def cosine_betas(num_steps, s=0.008, max_beta=0.999):\n"
SQRT = "def sqrt_betas(num_steps, s=1e-4, max_beta=0.999):\n"
SNR = """def snr(alphas_cumprod):
    return alphas_cumprod / (1 - alphas_cumprod)
"""
LOG_SNR = """def log_snr(alphas_cumprod):
    return torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)
"""
Q_SAMPLE = "def q_sample(x0, t, alphas_cumprod, noise):\n"
CROSSING = "def snr_crossing(snr_values):\n"

MISTAKES: list[dict] = [
    dict(
        name="linear_and_scaled_linear_swapped",  # the sqrt-space ramp in linear_betas and vice versa
        cell="linear_betas",
        source="""def linear_betas(num_steps, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2


def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
""",
        fails={"test_linear_betas"},
    ),
    dict(
        name="scaled_linear_squares_the_ends_twice",  # linspace(beta_start**2, beta_end**2) ** 0.5
        cell="linear_betas",
        source=LINEAR
        + "\n\n"
        + """def scaled_linear_betas(num_steps, beta_start=0.00085, beta_end=0.012):
    return torch.linspace(beta_start**2, beta_end**2, num_steps, dtype=torch.float64) ** 0.5
""",
        fails={"test_linear_betas"},
    ),
    dict(
        name="cosine_without_the_max_beta_cap",  # the last beta is exactly 1
        cell="cosine_betas",
        source=COSINE
        + """    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return 1 - alpha_bar[1:] / alpha_bar[:-1]
""",
        fails={"test_cosine_betas"},
    ),
    dict(
        name="cosine_without_the_offset_s",
        cell="cosine_betas",
        source=COSINE
        + """    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    alpha_bar = torch.cos(t * math.pi / 2) ** 2
    return torch.clamp(1 - alpha_bar[1:] / alpha_bar[:-1], max=max_beta)
""",
        fails={"test_cosine_betas"},
    ),
    dict(
        name="cosine_not_normalised_by_f0",  # alpha_bar(t) = f(t) instead of f(t) / f(0): same ratios but f(0) < 1
        cell="cosine_betas",
        source=COSINE
        + """    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.clamp(1 - f[1:] / f[:-1], max=max_beta)
    betas[0] = 1 - f[1]
    return betas
""",
        fails={"test_cosine_betas"},
    ),
    dict(
        name="sqrt_without_the_cap",  # the last beta exceeds 1 (alpha_bar(T) < 0)
        cell="sqrt_betas",
        source=SQRT
        + """    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    alpha_bar = 1 - torch.sqrt(t + s)
    return 1 - alpha_bar[1:] / alpha_bar[:-1]
""",
        fails={"test_sqrt_betas"},
    ),
    dict(
        name="sqrt_offset_outside_the_root",  # 1 - sqrt(t) - s instead of 1 - sqrt(t + s)
        cell="sqrt_betas",
        source=SQRT
        + """    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    alpha_bar = 1 - torch.sqrt(t) - s
    return torch.clamp(1 - alpha_bar[1:] / alpha_bar[:-1], max=max_beta)
""",
        fails={"test_sqrt_betas"},
    ),
    dict(
        name="alpha_bar_off_by_one",  # the cumulative product starts at 1 (alpha_bar_0 = 1)
        cell="alphas_cumprod",
        source="""def alphas_cumprod(betas):
    return torch.cat([betas.new_ones(1), torch.cumprod(1 - betas, dim=0)[:-1]])
""",
        fails={"test_alphas_cumprod"},
    ),
    dict(
        name="alpha_bar_product_of_betas",  # cumprod(betas) instead of cumprod(1 - betas)
        cell="alphas_cumprod",
        source="""def alphas_cumprod(betas):
    return 1 - torch.cumprod(betas, dim=0)
""",
        fails={"test_alphas_cumprod"},
    ),
    dict(
        name="q_sample_variance_instead_of_std",  # (1 - abar) * noise instead of sqrt(1 - abar) * noise
        cell="q_sample",
        source=Q_SAMPLE
        + """    abar = alphas_cumprod[t]
    if abar.ndim == 1:
        abar = abar.reshape(-1, *([1] * (x0.ndim - 1)))
    return abar.sqrt() * x0 + (1 - abar) * noise
""",
        fails={"test_q_sample"},
    ),
    dict(
        name="q_sample_reshape_only_for_2d",  # (B,) -> (B, 1): fine for (B, D), broken for images
        cell="q_sample",
        source=Q_SAMPLE
        + """    abar = alphas_cumprod[t]
    if abar.ndim == 1:
        abar = abar[:, None]
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
""",
        fails={"test_q_sample"},
    ),
    dict(
        name="snr_inverted",  # noise-to-signal
        cell="snr",
        source="""def snr(alphas_cumprod):
    return (1 - alphas_cumprod) / alphas_cumprod


"""
        + LOG_SNR,
        fails={"test_snr"},
    ),
    dict(
        name="log_snr_of_amplitudes",  # log(sqrt(abar) / sqrt(1 - abar)): half the log-SNR
        cell="snr",
        source=SNR
        + """

def log_snr(alphas_cumprod):
    return torch.log(alphas_cumprod.sqrt() / (1 - alphas_cumprod).sqrt())
""",
        fails={"test_snr"},
    ),
    dict(
        name="crossing_zero_based",  # the index, not the paper's step
        cell="crossing",
        source=CROSSING + "    return int(torch.nonzero(snr_values < 1)[0])\n",
        fails={"test_crossing"},
    ),
    dict(
        name="crossing_at_or_below_one",  # SNR <= 1 instead of SNR < 1
        cell="crossing",
        source=CROSSING + "    return int(torch.nonzero(snr_values <= 1)[0]) + 1\n",
        fails={"test_crossing"},
    ),
    dict(
        name="crossing_last_step_above_one",  # the last step with SNR >= 1, one before the crossing
        cell="crossing",
        source=CROSSING + "    return int(torch.nonzero(snr_values >= 1)[-1]) + 1\n",
        fails={"test_crossing"},
    ),
    dict(
        name="crossing_typed_constant",  # the number read off the notebook's cosine run, typed in
        cell="crossing",
        source=CROSSING + "    return 497\n",
        fails={"test_crossing"},
    ),
]
