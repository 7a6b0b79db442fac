"""Plausible learner mistakes in assignment 06: each replaces one solution cell and must fail exactly `fails`.

Graded in the sandbox by tests/course/test_mistakes.py: every mistake loses the points of
one graded cell, never more, because each test cell grades one function on reference inputs
(the grid gets the course's shift, the guided sampler the course's sampler and grid).
"""

from __future__ import annotations

_PATH = """
def flow_interpolate(x0, eps, t):
    t = torch.as_tensor(t, dtype=x0.dtype)
    {reshape}
    return {path}


def flow_target(x0, eps):
    return {target}
"""
_RESHAPE = "t = t.reshape((-1,) + (1,) * (x0.ndim - 1)) if t.ndim == 1 else t"

_DENOISER = """
def velocity_to_denoiser(velocity, num_train_timesteps=1000):
    def denoiser(x, sigma, **cond):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
        {t_and_x_t}
        v = velocity({fed}, {timestep}, **cond)
        return {x0_hat}

    return denoiser
"""
_T_AND_X_T = "t = 1 / (1 + 1 / s)\n        x_t = torch.where(torch.isinf(s), x, x / (1 + s))"

_SHIFT = """
def time_shift(t, shift):
    {body}
"""

_GRID = """
def flow_timesteps(steps, shift=1.0, num_train_timesteps=1000, *, time_shift=time_shift):
    {body}
"""

_EULER = """
@torch.no_grad()
def sample_flow_euler(velocity, x, timesteps, *, num_train_timesteps=1000, extra_args=None):
    extra_args = extra_args or {{}}
    for t, t_next in zip(timesteps[:-1].tolist(), timesteps[1:].tolist()):
        v = velocity(x, x.new_full((x.shape[0],), {timestep}), **extra_args)
        x = {update}
    return x
"""

_GUIDED = """
def guided_sample(
    velocity, noise, labels, null_label, *, guidance_scale, steps, shift=1.0,
    sampler=sample_flow_euler, grid=flow_timesteps,
):
    null = torch.full_like(labels, {null})

    def guided(x_t, timestep):
        v_u = velocity(x_t, timestep, class_labels=null)
        v_c = velocity(x_t, timestep, class_labels=labels)
        return {combine}

    return sampler(guided, noise, {grid})
"""


def _euler(timestep: str = "t * num_train_timesteps", update: str = "x + (t_next - t) * v") -> str:
    return _EULER.format(timestep=timestep, update=update)


def _guided(null: str = "null_label", combine: str = "v_u + guidance_scale * (v_c - v_u)", grid: str = "") -> str:
    return _GUIDED.format(null=null, combine=combine, grid=grid or "grid(steps, shift)")


MISTAKES: list[dict] = [
    {
        "name": "interpolate_t_and_1_minus_t_swapped",
        "cell": "path",
        "source": _PATH.format(reshape=_RESHAPE, path="t * x0 + (1 - t) * eps", target="eps - x0"),
        "fails": {"test_interpolate"},
    },
    {
        "name": "interpolate_per_sample_t_not_broadcast",
        "cell": "path",
        "source": _PATH.format(reshape="", path="(1 - t) * x0 + t * eps", target="eps - x0"),
        "fails": {"test_interpolate"},
    },
    {
        "name": "target_velocity_sign_flipped",
        "cell": "path",
        "source": _PATH.format(reshape=_RESHAPE, path="(1 - t) * x0 + t * eps", target="x0 - eps"),
        "fails": {"test_target"},
    },
    {
        "name": "denoiser_input_scaling_forgotten",  # the network is fed x, not x_t = x / (1 + sigma) = (1 - t) x
        "cell": "denoiser",
        "source": _DENOISER.format(
            t_and_x_t="t = 1 / (1 + 1 / s)\n        x_t = x",
            fed="x_t",
            timestep="t.reshape(-1) * num_train_timesteps",
            x0_hat="x_t - t * v",
        ),
        "fails": {"test_denoiser"},
    },
    {
        "name": "denoiser_velocity_sign_flipped",
        "cell": "denoiser",
        "source": _DENOISER.format(
            t_and_x_t=_T_AND_X_T, fed="x_t", timestep="t.reshape(-1) * num_train_timesteps", x0_hat="x_t + t * v"
        ),
        "fails": {"test_denoiser"},
    },
    {
        "name": "denoiser_timestep_fed_as_t",
        "cell": "denoiser",
        "source": _DENOISER.format(t_and_x_t=_T_AND_X_T, fed="x_t", timestep="t.reshape(-1)", x0_hat="x_t - t * v"),
        "fails": {"test_denoiser"},
    },
    {
        "name": "denoiser_skip_from_x_not_x_t",
        "cell": "denoiser",
        "source": _DENOISER.format(
            t_and_x_t=_T_AND_X_T, fed="x_t", timestep="t.reshape(-1) * num_train_timesteps", x0_hat="x - t * v"
        ),
        "fails": {"test_denoiser"},
    },
    {
        "name": "denoiser_sigma_inf_not_handled",  # sigma / (1 + sigma) is nan and x / (1 + sigma) is 0 at inf
        "cell": "denoiser",
        "source": _DENOISER.format(
            t_and_x_t="t = s / (1 + s)\n        x_t = x / (1 + s)",
            fed="x_t",
            timestep="t.reshape(-1) * num_train_timesteps",
            x0_hat="x_t - t * v",
        ),
        "fails": {"test_denoiser"},
    },
    {
        "name": "shift_applied_to_sigma_instead_of_t",
        "cell": "shift",
        "source": _SHIFT.format(
            body="sigma = t / (1 - t)  # the sigma view's noise level\n"
            "    sigma = shift * sigma / (1 + (shift - 1) * sigma)\n"
            "    return sigma / (1 + sigma)"
        ),
        "fails": {"test_shift"},
    },
    {
        "name": "shift_the_wrong_way",  # t / (shift - (shift - 1) t) is the map of 1 / shift: steps toward t = 0
        "cell": "shift",
        "source": _SHIFT.format(body="return t / (shift - (shift - 1) * t)"),
        "fails": {"test_shift"},
    },
    {
        "name": "grid_without_the_final_zero",
        "cell": "grid",
        "source": _GRID.format(
            body="t_min = float(time_shift(1 / num_train_timesteps, shift))\n"
            "    return time_shift(torch.linspace(1.0, t_min, steps, dtype=torch.float64), shift)"
        ),
        "fails": {"test_grid"},
    },
    {
        "name": "grid_t_min_not_shifted_at_construction",
        "cell": "grid",
        "source": _GRID.format(
            body="ramp = torch.linspace(1.0, 1 / num_train_timesteps, steps, dtype=torch.float64)\n"
            "    return torch.cat([time_shift(ramp, shift), ramp.new_zeros(1)])"
        ),
        "fails": {"test_grid"},
    },
    {
        "name": "grid_linspace_from_1_to_0",  # the paper's grid, not diffusers'
        "cell": "grid",
        "source": _GRID.format(
            body="return time_shift(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)"
        ),
        "fails": {"test_grid"},
    },
    {
        "name": "euler_velocity_sign_flipped",
        "cell": "euler",
        "source": _euler(update="x + (t - t_next) * v"),
        "fails": {"test_euler"},
    },
    {
        "name": "euler_timestep_fed_as_t",
        "cell": "euler",
        "source": _euler(timestep="t"),
        "fails": {"test_euler"},
    },
    {
        "name": "euler_velocity_at_the_next_t",
        "cell": "euler",
        "source": _euler(timestep="t_next * num_train_timesteps"),
        "fails": {"test_euler"},
    },
    {
        "name": "guided_with_the_papers_w_as_the_scale",
        "cell": "guided",
        "source": _guided(combine="v_c + guidance_scale * (v_c - v_u)"),
        "fails": {"test_guided"},
    },
    {
        "name": "guided_null_label_hard_coded",  # 10 is digits-flow's null label, not every model's
        "cell": "guided",
        "source": _guided(null="10"),
        "fails": {"test_guided"},
    },
    {
        "name": "guided_ignores_the_shift",
        "cell": "guided",
        "source": _guided(grid="grid(steps)"),
        "fails": {"test_guided"},
    },
]
