"""Plausible learner mistakes for assignment 03 (DDPM and DDIM), each losing the points of exactly one test cell.

Each entry replaces the solution cell `cell` of solutions/03_ddpm_ddim/ddpm_ddim.ipynb by `source`
(what a learner might write) and names the test cells that must fail (`fails`). Graded in the sandbox,
once per mistake, by tests/course/test_mistakes.py.
"""


def _spacings(leading: str, trailing: str, linspace: str, *, raises: bool = True) -> str:
    other = (
        (
            "    else:\n"
            "        raise ValueError(f\"spacing must be one of ['leading', 'trailing', 'linspace'], \"\n"
            '                         f"got {spacing!r}")\n'
        )
        if raises
        else ""
    )
    return (
        "def timesteps_for(num_train_steps, num_steps, spacing):\n"
        '    if spacing == "leading":\n'
        f"        steps = {leading}\n"
        '    elif spacing == "trailing":\n'
        f"        steps = {trailing}\n"
        '    elif spacing == "linspace":\n'
        f"        steps = {linspace}\n"
        f"{other}"
        "    return torch.from_numpy(steps.astype(np.int64))\n"
    )


LEADING = "np.arange(num_steps)[::-1] * (num_train_steps // num_steps)"
TRAILING = "np.round(num_train_steps - np.arange(num_steps) * (num_train_steps / num_steps)) - 1"
LINSPACE = "np.linspace(0, num_train_steps - 1, num_steps).round()[::-1]"

DDPM_HEAD = """def ddpm_step(x_t, t, t_prev, eps_hat, alphas_cumprod, noise):
    a = float(alphas_cumprod[t])
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    beta = 1 - a / a_prev
    x0_hat = (x_t - (1 - a) ** 0.5 * eps_hat) / a**0.5
"""
DDPM_MEAN = "    mean = (a_prev**0.5 * beta / (1 - a)) * x0_hat + ((1 - beta) ** 0.5 * (1 - a_prev) / (1 - a)) * x_t\n"
DDIM_HEAD = """def ddim_step(x_t, t, t_prev, eps_hat, alphas_cumprod, eta=0.0, noise=None):
    a = float(alphas_cumprod[t])
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
"""
X0_HAT = "    x0_hat = (x_t - (1 - a) ** 0.5 * eps_hat) / a**0.5\n"
S = "    s = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5\n"
OUT = "    out = a_prev**0.5 * x0_hat + max(1 - a_prev - s**2, 0.0) ** 0.5 * eps_hat\n"
NOISE = "    if eta > 0:\n        out = out + s * noise\n    return out.to(x_t.dtype)\n"
SAMPLE = "def ddim_sample(eps_model, x_T, timesteps, alphas_cumprod, labels, step=ddim_step):\n"

MISTAKES: list[dict] = [
    dict(
        name="leading_starts_one_ratio_too_high",  # r, 2r, ..., S r: reaches T (out of range) for S | T
        cell="spacings",
        source=_spacings("np.arange(1, num_steps + 1)[::-1] * (num_train_steps // num_steps)", TRAILING, LINSPACE),
        fails={"test_leading"},
    ),
    dict(
        name="leading_with_a_float_ratio",  # T / S instead of the integer ratio T // S, then truncated
        cell="spacings",
        source=_spacings("np.arange(num_steps)[::-1] * (num_train_steps / num_steps)", TRAILING, LINSPACE),
        fails={"test_leading"},
    ),
    dict(
        name="trailing_off_by_one",  # forgets the final - 1: starts at T
        cell="spacings",
        source=_spacings(
            LEADING, "np.round(num_train_steps - np.arange(num_steps) * (num_train_steps / num_steps))", LINSPACE
        ),
        fails={"test_trailing"},
    ),
    dict(
        name="trailing_with_the_integer_ratio",  # T // S: right when S divides T, wrong otherwise
        cell="spacings",
        source=_spacings(
            LEADING, "num_train_steps - np.arange(num_steps) * (num_train_steps // num_steps) - 1", LINSPACE
        ),
        fails={"test_trailing"},
    ),
    dict(
        name="linspace_truncated_not_rounded",
        cell="spacings",
        source=_spacings(LEADING, TRAILING, "np.linspace(0, num_train_steps - 1, num_steps)[::-1].astype(np.int64)"),
        fails={"test_linspace"},
    ),
    dict(
        name="unknown_spacing_falls_through",  # no ValueError: an unknown name is an UnboundLocalError
        cell="spacings",
        source=_spacings(LEADING, TRAILING, LINSPACE, raises=False),
        fails={"test_linspace"},
    ),
    dict(
        name="ddpm_variance_beta_instead_of_posterior",  # sqrt(beta) z instead of sqrt((1 - a') / (1 - a) beta) z
        cell="ddpm",
        source=DDPM_HEAD + DDPM_MEAN + "    return (mean + beta**0.5 * noise).to(x_t.dtype)\n",
        fails={"test_ddpm"},
    ),
    dict(
        name="ddpm_t_prev_minus_one_wraps_around",  # alphas_cumprod[-1] is the LAST step, not the clean data
        cell="ddpm",
        source=DDPM_HEAD.replace(
            "float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0", "float(alphas_cumprod[t_prev])"
        )
        + DDPM_MEAN
        + "    return (mean + ((1 - a_prev) / (1 - a) * beta) ** 0.5 * noise).to(x_t.dtype)\n",
        fails={"test_ddpm"},
    ),
    dict(
        name="ddpm_beta_of_one_step",  # beta_t = 1 - a_t / a_{t-1} even when skipping to t_prev < t - 1
        cell="ddpm",
        source=DDPM_HEAD.replace(
            "    beta = 1 - a / a_prev\n",
            "    beta = 1 - a / (float(alphas_cumprod[t - 1]) if t >= 1 else 1.0)\n",
        )
        + DDPM_MEAN
        + "    return (mean + ((1 - a_prev) / (1 - a) * beta) ** 0.5 * noise).to(x_t.dtype)\n",
        fails={"test_ddpm"},
    ),
    dict(
        name="ddim_x0_hat_without_the_square_root",  # (x_t - (1 - a) eps) / sqrt(a)
        cell="ddim",
        source=DDIM_HEAD + "    x0_hat = (x_t - (1 - a) * eps_hat) / a**0.5\n" + S + OUT + NOISE,
        fails={"test_ddim_eta0"},
    ),
    dict(
        name="ddim_adds_noise_when_eta_is_zero",  # s * None: a TypeError at eta = 0 with noise=None
        cell="ddim",
        source=DDIM_HEAD + X0_HAT + S + OUT + "    out = out + s * noise\n    return out.to(x_t.dtype)\n",
        fails={"test_ddim_eta0"},
    ),
    dict(
        name="ddim_eta_sign_flipped",  # s = -eta * ...: the same variance, the noise subtracted
        cell="ddim",
        source=DDIM_HEAD + X0_HAT + S.replace("s = eta", "s = -eta") + OUT + NOISE,
        fails={"test_ddim_eta"},
    ),
    dict(
        name="ddim_sigma_without_the_square_root",  # s = eta (1 - a') / (1 - a) (1 - a / a'): a variance, not a std
        cell="ddim",
        source=DDIM_HEAD + X0_HAT + "    s = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev))\n" + OUT + NOISE,
        fails={"test_ddim_eta"},
    ),
    dict(
        name="ddim_direction_ignores_the_noise_scale",  # sqrt(1 - a') eps_hat: right at eta = 0 only
        cell="ddim",
        source=DDIM_HEAD + X0_HAT + S + "    out = a_prev**0.5 * x0_hat + (1 - a_prev) ** 0.5 * eps_hat\n" + NOISE,
        fails={"test_ddim_eta"},
    ),
    dict(
        name="sample_stops_at_the_last_timestep",  # never steps to t_prev = -1: returns x at t = 0, not x0_hat
        cell="sampler",
        source=SAMPLE
        + """    x = x_T
    steps = [int(t) for t in timesteps]
    for t, t_prev in zip(steps[:-1], steps[1:]):
        x = step(x, t, t_prev, eps_model(x, t, labels), alphas_cumprod)
    return x
""",
        fails={"test_sampler"},
    ),
    dict(
        name="sample_steps_from_x_T_every_time",
        cell="sampler",
        source=SAMPLE
        + """    x = x_T
    steps = [int(t) for t in timesteps] + [-1]
    for t, t_prev in zip(steps[:-1], steps[1:]):
        x = step(x_T, t, t_prev, eps_model(x_T, t, labels), alphas_cumprod)
    return x
""",
        fails={"test_sampler"},
    ),
    dict(
        name="sample_eps_at_the_previous_timestep",  # asks the model at t_prev instead of t
        cell="sampler",
        source=SAMPLE
        + """    x = x_T
    steps = [int(t) for t in timesteps] + [-1]
    for t, t_prev in zip(steps[:-1], steps[1:]):
        x = step(x, t, t_prev, eps_model(x, max(t_prev, 0), labels), alphas_cumprod)
    return x
""",
        fails={"test_sampler"},
    ),
]
