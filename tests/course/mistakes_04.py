"""Plausible learner mistakes for assignment 04 (ODE samplers), each losing the points of exactly one test cell.

Each entry replaces the solution cell `cell` of solutions/04_ode_samplers/ode_samplers.ipynb by `source`
(what a learner might write) and names the test cells that must fail (`fails`). Graded in the sandbox,
once per mistake, by tests/course/test_mistakes.py.
"""

KARRAS = "def karras_sigmas(n, sigma_min, sigma_max, rho=7.0):\n"
EULER = "def euler(denoiser, x, sigmas):\n"
HEUN = "def heun(denoiser, x, sigmas):\n"
DPMPP = "def dpmpp_2m(denoiser, x, sigmas):\n"
ORDER = "def convergence_order(solver, denoiser, x_start, exact, grids):\n"
# The solution's first line: the error where each grid reaches sigma_min, one step before its final 0.
ERRORS_AT_SIGMA_MIN = (
    "    errors = [float((solver(denoiser, x_start, g[:-1]) - exact(g[-2])).abs().max()) for g in grids]\n"
)

MISTAKES: list[dict] = [
    dict(
        name="karras_rho_applied_inside_out",  # sigma^rho spaced evenly, then the 1/rho power
        cell="karras",
        source=KARRAS
        + """    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    sigmas = (sigma_max**rho + ramp * (sigma_min**rho - sigma_max**rho)) ** (1 / rho)
    return torch.cat([sigmas, sigmas.new_zeros(1)])
""",
        fails={"test_karras"},
    ),
    dict(
        name="karras_without_the_final_zero",
        cell="karras",
        source=KARRAS
        + """    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
""",
        fails={"test_karras"},
    ),
    dict(
        name="karras_ramp_of_n_plus_one_points",  # n + 1 evenly spaced levels, the last one replaced by 0
        cell="karras",
        source=KARRAS
        + """    ramp = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    sigmas[-1] = 0.0
    return sigmas
""",
        fails={"test_karras"},
    ),
    dict(
        name="euler_slope_sign_flipped",
        cell="euler",
        source=EULER
        + """    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (denoiser(x, sigma) - x) / sigma
        x = x + (sigma_next - sigma) * d
    return x
""",
        fails={"test_euler"},
    ),
    dict(
        name="euler_slope_at_the_next_sigma",  # divides by sigma_next = 0 on the last step
        cell="euler",
        source=EULER
        + """    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoiser(x, sigma_next)) / sigma_next
        x = x + (sigma_next - sigma) * d
    return x
""",
        fails={"test_euler"},
    ),
    dict(
        name="heun_correction_on_the_last_step",  # the second slope divides by sigma = 0: nan
        cell="heun",
        source=HEUN
        + """    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoiser(x, sigma)) / sigma
        x_trial = x + (sigma_next - sigma) * d
        d_trial = (x_trial - denoiser(x_trial, sigma_next)) / sigma_next
        x = x + (sigma_next - sigma) * (d + d_trial) / 2
    return x
""",
        fails={"test_heun"},
    ),
    dict(
        name="heun_second_slope_at_the_old_sigma",
        cell="heun",
        source=HEUN
        + """    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoiser(x, sigma)) / sigma
        x_trial = x + (sigma_next - sigma) * d
        if sigma_next == 0:
            x = x_trial
        else:
            d_trial = (x_trial - denoiser(x_trial, sigma)) / sigma
            x = x + (sigma_next - sigma) * (d + d_trial) / 2
    return x
""",
        fails={"test_heun"},
    ),
    dict(
        name="heun_keeps_the_trial_point",  # the corrected step is computed from the trial point, not from x
        cell="heun",
        source=HEUN
        + """    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoiser(x, sigma)) / sigma
        x_trial = x + (sigma_next - sigma) * d
        if sigma_next == 0:
            x = x_trial
        else:
            d_trial = (x_trial - denoiser(x_trial, sigma_next)) / sigma_next
            x = x_trial + (sigma_next - sigma) * (d + d_trial) / 2
    return x
""",
        fails={"test_heun"},
    ),
    dict(
        name="dpmpp_h_with_the_wrong_sign",  # h = lambda_i - lambda_{i+1} < 0
        cell="dpmpp",
        source=DPMPP
        + """    previous = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma_next) - torch.log(sigma)
            target = denoised
            if previous is not None:
                r = (torch.log(sigmas[i - 1]) - torch.log(sigma)) / h
                target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - torch.expm1(-h) * target
        previous = denoised
    return x
""",
        fails={"test_dpmpp"},
    ),
    dict(
        name="dpmpp_r_inverted",  # r = h / h_last
        cell="dpmpp",
        source=DPMPP
        + """    previous = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma) - torch.log(sigma_next)
            target = denoised
            if previous is not None:
                r = h / (torch.log(sigmas[i - 1]) - torch.log(sigma))
                target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - torch.expm1(-h) * target
        previous = denoised
    return x
""",
        fails={"test_dpmpp"},
    ),
    dict(
        name="dpmpp_first_step_extrapolates_from_zero",  # no first-step fallback: previous starts at zeros
        cell="dpmpp",
        source=DPMPP
        + """    previous = torch.zeros_like(x)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma) - torch.log(sigma_next)
            h_last = torch.log(sigmas[i - 1]) - torch.log(sigma) if i > 0 else h
            r = h_last / h
            target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - torch.expm1(-h) * target
        previous = denoised
    return x
""",
        fails={"test_dpmpp"},
    ),
    dict(
        name="order_not_negated",  # returns the slope, about -1 and -2
        cell="orders",
        source=ORDER
        + ERRORS_AT_SIGMA_MIN
        + """    steps = [len(grid) - 2 for grid in grids]
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0]), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="order_measured_at_sigma_zero",  # the old way: the last step's error floor bends the line
        cell="orders",
        source=ORDER
        + """    errors = [float((solver(denoiser, x_start, grid) - exact(0.0)).abs().max()) for grid in grids]
    steps = [len(grid) - 1 for grid in grids]
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0]), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="order_runs_to_zero_but_compares_at_sigma_min",  # the whole grid, against the solution at sigma_min
        cell="orders",
        source=ORDER
        + """    errors = [float((solver(denoiser, x_start, grid) - exact(grid[-2])).abs().max()) for grid in grids]
    steps = [len(grid) - 2 for grid in grids]
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0]), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="order_counts_the_last_step_too",  # m = len(grid) - 1, the steps to 0, not the m taken to sigma_min
        cell="orders",
        source=ORDER
        + ERRORS_AT_SIGMA_MIN
        + """    steps = [len(grid) - 1 for grid in grids]
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0]), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="order_from_the_mean_error",
        cell="orders",
        source=ORDER
        + """    errors = [float((solver(denoiser, x_start, g[:-1]) - exact(g[-2])).abs().mean()) for g in grids]
    steps = [len(grid) - 2 for grid in grids]
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0]), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="order_from_the_first_and_last_grid_only",  # a two-point slope, not the least-squares line
        cell="orders",
        source=ORDER
        + ERRORS_AT_SIGMA_MIN
        + """    m0, m1 = len(grids[0]) - 2, len(grids[-1]) - 2
    return -float(math.log(errors[-1] / errors[0]) / math.log(m1 / m0)), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="order_rounded_to_the_theory",  # the measured slope rounded to the textbook integer
        cell="orders",
        source=ORDER
        + ERRORS_AT_SIGMA_MIN
        + """    steps = [len(grid) - 2 for grid in grids]
    return float(round(-np.polyfit(np.log(steps), np.log(errors), 1)[0])), errors
""",
        fails={"test_orders"},
    ),
    dict(
        name="orders_typed_from_the_notebook_run",  # the numbers seen in the plot, typed in per solver
        cell="orders",
        source="""TYPED = {"euler": 0.99, "heun": 2.02, "dpmpp_2m": 2.03}


"""
        + ORDER
        + ERRORS_AT_SIGMA_MIN
        + """    return TYPED[solver.__name__], errors
""",
        fails={"test_orders"},
    ),
]
