"""Training a diffusion model: the simple loss, label dropout for CFG, EMA, loss per noise-level bucket.

One step (Ho et al. 2020, Algorithm 1): draw ``x0`` (and its label), ``t ~ U{0, ..., T-1}``,
``eps ~ N(0, I)``; form ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``; regress the
network's output on the target of its prediction type, eps, ``v = sqrt(alpha_bar) eps -
sqrt(1 - alpha_bar) x0`` (Salimans & Ho 2022) or x0, with the mean squared error. A label is
replaced by the null label with probability ``label_dropout`` (Ho & Salimans 2021, Algorithm 1), so
one network learns both the conditional and the unconditional model.

The same loop trains the two other families (``objective``, :data:`OBJECTIVES`); only the noise level
drawn and the triple (network input, network timestep, target) differ:

* ``"flow"`` (rectified flow, Esser et al. 2024): ``t = sigmoid(u)``, ``u ~ N(0, 1)``, their best
  "lognorm(0.00, 1.00)" (Sec. 3.1 and 5.1); input ``x_t = (1 - t) x0 + t eps`` at timestep
  ``t * num_train_timesteps`` (as diffusers' SD3 and :class:`~diffusion_internals.flow.FlowDenoiser`);
  target the velocity ``eps - x0``.
* ``"edm"`` (Karras et al. 2022): ``ln(sigma) ~ N(P_mean, P_std^2)``; input ``c_in (x0 + sigma eps)`` at
  ``c_noise = ln(sigma) / 4``; target ``F_target = (x0 - c_skip x) / c_out`` (Table 1, eq. 8).

Reproducibility: weights are initialised after ``torch.manual_seed(seed)``, and every draw of the
loop comes from one ``torch.Generator`` seeded with ``seed``, so a run is repeatable on the same
machine, torch version and number of CPU threads (``torch.set_num_threads``; the CLI uses 1).
Other thread counts or a GPU change the floating-point order of reductions, so the weights differ
in the last bits and then drift apart; the metrics stay about the same.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from diffusion_internals.course import data
from diffusion_internals.course.checkpoints import CLASSIFIERS, OBJECTIVES, alphas_cumprod_for
from diffusion_internals.course.metrics import classifier_accuracy
from diffusion_internals.course.models import (
    DigitsClassifier,
    TimestepMLP,
    class_conditional_unet,
    null_label,
    num_parameters,
)
from diffusion_internals.denoisers import unwrap_output
from diffusion_internals.flow import flow_interpolate, flow_target
from diffusion_internals.forward import q_sample
from diffusion_internals.parameterization import PREDICTION_TYPES, SHORT_NAMES, training_target
from diffusion_internals.preconditioning import (
    EDM_P_MEAN,
    EDM_P_STD,
    EDM_SIGMA_DATA,
    edm_preconditioning,
    edm_target,
    edm_training_sigmas,
)
from diffusion_internals.schedules import BETA_SCHEDULE_OPTIONS
from diffusion_internals.utils import broadcast_like
from diffusion_internals.validation import check_choice, check_int, check_like, check_real

__all__ = [
    "OBJECTIVES",
    "draw_levels",
    "training_loss",
    "diffusion_loss",
    "loss_by_timestep",
    "train",
    "train_classifier",
]

# The loss-by-bucket ranges of EDM: ln(sigma) in P_mean +- 3 P_std, where 99.7% of the training levels fall.
EDM_LOG_SIGMA_BUCKETS = (EDM_P_MEAN - 3 * EDM_P_STD, EDM_P_MEAN + 3 * EDM_P_STD)


def draw_levels(
    objective: str, n: int, *, generator: torch.Generator | None = None, num_train_timesteps: int = 1000
) -> torch.Tensor:
    """n training noise levels (n,): t ~ U{0..T-1} (Ho 2020), t ~ logit-normal(0, 1) (Esser 2024) or EDM's sigma."""
    check_choice("objective", objective, OBJECTIVES)
    if objective == "diffusion":
        return torch.randint(0, num_train_timesteps, (n,), generator=generator)  # int64
    if objective == "flow":  # Esser et al. 2024, Sec. 3.1, logit-normal with m = 0, s = 1: t = sigmoid(u), u ~ N(0, 1)
        return torch.sigmoid(torch.randn(n, generator=generator, dtype=torch.float64))
    return edm_training_sigmas(n, generator=generator)  # ln(sigma) ~ N(-1.2, 1.2^2), float64


def _network_terms(
    objective: str,
    x0: torch.Tensor,
    eps: torch.Tensor,
    level: torch.Tensor,
    *,
    alphas_cumprod: torch.Tensor | None,
    prediction_type: str,
    num_train_timesteps: int,
    sigma_data: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(network input, network timestep (B,), regression target) of one objective at noise levels `level` (B,)."""
    if objective == "diffusion":  # Ho et al. 2020, eq. 14; the timestep is the integer t itself
        x_t = q_sample(x0, level, alphas_cumprod, eps)
        return (
            x_t,
            level,
            training_target(prediction_type, x0, eps, alphas_cumprod.to(torch.float64)[level].to(x0.dtype)),
        )
    timestep_dtype = torch.float64 if x0.dtype == torch.float64 else torch.float32  # as the denoisers feed it
    if objective == "flow":  # Esser et al. 2024, eqs. 3 and 6 with a_t = 1 - t, b_t = t
        return flow_interpolate(x0, eps, level), (level * num_train_timesteps).to(timestep_dtype), flow_target(x0, eps)
    sigma = broadcast_like(level, x0, name="sigma")  # float64 (B, 1, ..., 1)
    c = edm_preconditioning(sigma, sigma_data=sigma_data)  # Karras et al. 2022, Table 1
    x_in = (c.c_in * (x0 + sigma * eps)).to(x0.dtype)  # c_in x, x = x0 + sigma eps
    return x_in, c.c_noise.reshape(-1).to(timestep_dtype), edm_target(x0, eps, level, sigma_data=sigma_data)


def training_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    eps: torch.Tensor,
    level: torch.Tensor,
    *,
    objective: str = "diffusion",
    alphas_cumprod: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
    num_train_timesteps: int = 1000,
    sigma_data: float = EDM_SIGMA_DATA,
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample squared error (B,) of the network against its objective's target (Ho 2020; Esser 2024; Karras 2022).

    ``level`` (B,) is what :func:`draw_levels` draws: the integer t (``"diffusion"``, which needs
    ``alphas_cumprod`` and ``prediction_type``), t in [0, 1] (``"flow"``, network timestep
    ``t * num_train_timesteps``) or sigma > 0 (``"edm"``, with ``sigma_data``).
    """
    check_choice("objective", objective, OBJECTIVES)
    if (objective == "diffusion") != (alphas_cumprod is not None) or (
        objective != "diffusion" and prediction_type != "epsilon"
    ):
        raise ValueError(
            f"alphas_cumprod and prediction_type belong to objective='diffusion' (which needs alphas_cumprod); "
            f"got objective={objective!r}, alphas_cumprod "
            f"{'given' if alphas_cumprod is not None else 'None'}, prediction_type={prediction_type!r}"
        )
    x_in, timestep, target = _network_terms(
        objective,
        x0,
        eps,
        level,
        alphas_cumprod=alphas_cumprod,
        prediction_type=prediction_type,
        num_train_timesteps=num_train_timesteps,
        sigma_data=sigma_data,
    )
    cond = {} if class_labels is None else {"class_labels": class_labels}
    output = check_like(
        "model output", unwrap_output(model(x_in, timestep, **cond)), x0, x_name="x0"
    )  # no broadcasting
    # EDM: the loss on D weighted by lambda(sigma) = 1 / c_out^2 is exactly this unweighted loss on F,
    # lambda c_out^2 ||F - F_target||^2 (Karras et al. 2022, eq. 8), so no weight appears here.
    return (output - target).pow(2).reshape(x0.shape[0], -1).mean(1)  # (B,)


def diffusion_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    prediction_type: str = "epsilon",
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample squared error (B,) of model(x_t, t) against its target, x_t = q_sample(...) (Ho 2020, eq. 14)."""
    if not isinstance(t, torch.Tensor) or t.shape != (x0.shape[0],):
        raise ValueError(
            f"t must be an integer tensor of shape (B,) = ({x0.shape[0]},), got {getattr(t, 'shape', type(t).__name__)}"
        )
    return training_loss(
        model, x0, noise, t, alphas_cumprod=alphas_cumprod, prediction_type=prediction_type, class_labels=class_labels
    )


@torch.no_grad()
def loss_by_timestep(
    model: torch.nn.Module,
    x0: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    prediction_type: str = "epsilon",
    class_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
) -> torch.Tensor:
    """diffusion_loss averaged over x0 (N, ...) at each timestep with fixed noise, (len(timesteps),) float64."""
    if not isinstance(timesteps, torch.Tensor) or timesteps.ndim != 1 or timesteps.dtype.is_floating_point:
        raise ValueError(f"timesteps must be a 1-D integer tensor, got {getattr(timesteps, 'shape', timesteps)}")
    check_int("batch_size", batch_size, minimum=1)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)  # the same noise at every timestep
    losses = []
    for t in timesteps.tolist():
        total = 0.0
        for start in range(0, len(x0), batch_size):
            chunk = slice(start, start + batch_size)
            labels = None if class_labels is None else class_labels[chunk]
            t_batch = torch.full((len(x0[chunk]),), t, dtype=torch.int64)
            total += float(
                diffusion_loss(
                    model,
                    x0[chunk],
                    t_batch,
                    noise[chunk],
                    alphas_cumprod,
                    prediction_type=prediction_type,
                    class_labels=labels,
                )
                .double()
                .sum()
            )
        losses.append(total / len(x0))
    return torch.tensor(losses, dtype=torch.float64)


def _default_model(dataset: str, train_set: data.ImageData | None) -> torch.nn.Module:
    if train_set is None:
        return TimestepMLP(dim=2)
    _, channels, height, _ = train_set.images.shape
    return class_conditional_unet(in_channels=channels, sample_size=height, num_classes=train_set.num_classes)


def _bucket(objective: str, level: torch.Tensor, buckets: int, num_train_timesteps: int) -> torch.Tensor:
    """The loss-log bucket (B,) in [0, buckets - 1] of each training level (see _BUCKETS)."""
    if objective == "diffusion":
        return level * buckets // num_train_timesteps
    if objective == "flow":
        position = level  # t in [0, 1]
    else:
        low, high = EDM_LOG_SIGMA_BUCKETS
        position = (level.log() - low) / (high - low)
    return (position * buckets).floor().clamp(0, buckets - 1).long()


_BUCKETS = {  # what _bucket's ranges are, for record["metrics"]["buckets"]
    "diffusion": "{buckets} equal ranges of t in [0, {last}], lowest first",
    "flow": "{buckets} equal ranges of t in [0, 1], lowest (least noise) first",
    "edm": (
        f"{{buckets}} equal ranges of ln(sigma) in [{EDM_LOG_SIGMA_BUCKETS[0]:g}, {EDM_LOG_SIGMA_BUCKETS[1]:g}] "
        "(P_mean +- 3 P_std), lowest first; the first and last also hold the levels beyond"
    ),
}


def train(
    dataset: str,
    *,
    objective: str = "diffusion",
    schedule: str = "cosine",
    zero_snr: bool = False,
    prediction_type: str = "epsilon",
    steps: int = 4000,
    batch_size: int = 128,
    lr: float = 2e-3,
    label_dropout: float = 0.1,
    ema: float = 0.999,
    seed: int = 0,
    num_train_timesteps: int = 1000,
    buckets: int = 10,
    warmup: int = 100,
    log_every: int = 100,
    model: torch.nn.Module | None = None,
    betas: torch.Tensor | None = None,
    callback: Callable[[int, torch.nn.Module], Any] | None = None,
    device: str | torch.device | None = None,
    cifar10_root: str | None = None,
    progress: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train with the simple loss and label dropout; return (EMA model, record) (Ho et al. 2020, Algorithm 1).

    The record holds the configuration, the loss log and the metrics.
    ``objective`` "flow" or "edm" trains a rectified-flow or an EDM network instead (module docstring); the
    beta-schedule options (``schedule``, ``zero_snr``, ``prediction_type``, ``betas``) then must keep their defaults.

    ``betas`` (T,) replaces the named ``schedule`` (saved as ``schedule="custom"`` with ``trained_betas``).
    ``callback(step, ema_model)`` runs every ``log_every`` steps, without gradients and with the EMA
    model in eval mode; what it returns is kept in ``record["history"]["callback"]``.
    ``device`` ("cuda", ...) moves the model there; every batch is drawn on the CPU from the seeded
    generator and then moved, so the draws are the same on every device.
    """
    for name, value, minimum in (
        ("steps", steps, 1),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
        ("buckets", buckets, 1),
        ("warmup", warmup, 0),
        ("log_every", log_every, 1),
    ):
        check_int(name, value, minimum=minimum)
    check_real("lr", lr, lambda v: v > 0, "lr > 0")
    check_real("label_dropout", label_dropout, lambda v: 0 <= v <= 1, "0 <= label_dropout <= 1")
    check_real("ema", ema, lambda v: 0 <= v < 1, "0 <= ema < 1 (0 = no EMA)")
    check_choice("objective", objective, OBJECTIVES)
    check_choice("schedule", schedule, sorted(BETA_SCHEDULE_OPTIONS))
    prediction_type = check_choice(
        "prediction_type", SHORT_NAMES.get(prediction_type, prediction_type), PREDICTION_TYPES
    )  # "eps", "v" and "x0" stand for diffusers' names
    if objective != "diffusion":
        changed = {
            name: got
            for name, got, differs in (
                ("schedule", repr(schedule), schedule != "cosine"),
                ("zero_snr", repr(zero_snr), bool(zero_snr)),
                ("prediction_type", repr(prediction_type), prediction_type != "epsilon"),
                ("betas", "a tensor", betas is not None),
            )
            if differs
        }
        if changed:
            raise ValueError(
                f"{', '.join(changed)} only apply to objective='diffusion' (a discrete beta schedule); "
                f"objective={objective!r} must keep their defaults, got "
                + ", ".join(f"{name}={got}" for name, got in changed.items())
            )
    if dataset in data.TOY_2D:
        train_set = None
    elif dataset in data.DATASETS:
        train_set = data.load_dataset(dataset, split="train", root=cifar10_root)
    else:
        raise ValueError(f"dataset must be one of {list(data.DATASETS) + list(data.TOY_2D)}, got {dataset!r}")
    if objective == "diffusion":
        config: dict[str, Any] = dict(
            dataset=dataset,
            objective=objective,
            schedule=schedule,
            zero_snr=bool(zero_snr),
            num_train_timesteps=num_train_timesteps,
            prediction_type=prediction_type,
        )
    elif objective == "flow":
        config = dict(
            dataset=dataset,
            objective=objective,
            num_train_timesteps=num_train_timesteps,  # the network's timestep is t * num_train_timesteps
            t_distribution="logit-normal(0, 1): t = sigmoid(u), u ~ N(0, 1) (Esser et al. 2024, Sec. 3.1)",
        )
    else:  # EDM's value for images in [-1, 1]; metrics["data_std"] is the measured one
        config = dict(
            dataset=dataset, objective=objective, sigma_data=EDM_SIGMA_DATA, p_mean=EDM_P_MEAN, p_std=EDM_P_STD
        )
    if betas is not None:
        if (
            not isinstance(betas, torch.Tensor)
            or betas.ndim != 1
            or len(betas) < 2
            or not bool(((betas > 0) & (betas <= 1)).all())
        ):
            raise ValueError(
                f"betas must be a 1-D tensor of at least 2 values in (0, 1], got "
                f"{getattr(betas, 'shape', type(betas).__name__)}"
            )
        config.update(schedule="custom", num_train_timesteps=len(betas), trained_betas=betas.to(torch.float64).tolist())
        num_train_timesteps = len(betas)
    alphas_cumprod = alphas_cumprod_for(config).to(torch.float32) if objective == "diffusion" else None  # (T,)

    torch.manual_seed(seed)  # diffusers initialises weights from the global generator
    model = _default_model(dataset, train_set) if model is None else model
    null = null_label(model)
    if train_set is not None and null is None:
        raise ValueError("model must be class-conditional (num_class_embeds = classes + 1) for an image data set")
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    alphas_cumprod = None if alphas_cumprod is None else alphas_cumprod.to(device)
    model.train()
    ema_model = copy.deepcopy(model).requires_grad_(False) if ema > 0 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    # Linear warm-up, then cosine decay to 0 (Loshchilov & Hutter 2017).
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda i: (
            min(1.0, (i + 1) / (warmup + 1))
            * 0.5
            * (1 + math.cos(math.pi * min(1.0, max(0, i - warmup) / max(1, steps - warmup))))
        ),
    )
    g = torch.Generator().manual_seed(seed)
    log: dict[str, list] = {"step": [], "loss": [], "loss_by_bucket": [], "callback": []}
    window_sum, window_count = torch.zeros(buckets, dtype=torch.float64), torch.zeros(buckets, dtype=torch.float64)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps,
            desc=f"{dataset} {schedule} {prediction_type}" if objective == "diffusion" else f"{dataset} {objective}",
        )
    start = time.perf_counter()
    for step in range(steps):
        if train_set is None:
            x0, labels = data.toy_2d(dataset, batch_size, generator=g), None
        else:
            index = torch.randint(0, len(train_set.labels), (batch_size,), generator=g)
            x0, labels = train_set.images[index], train_set.labels[index]  # (B, C, H, W), (B,)
            dropped = torch.rand(batch_size, generator=g) < label_dropout
            labels = torch.where(dropped, torch.full_like(labels, null), labels)
        level = draw_levels(objective, batch_size, generator=g, num_train_timesteps=num_train_timesteps)  # (B,)
        eps = torch.randn(x0.shape, generator=g)
        x0, level, eps = x0.to(device), level.to(device), eps.to(device)
        labels = None if labels is None else labels.to(device)
        per_sample = training_loss(
            model,
            x0,
            eps,
            level,
            objective=objective,
            alphas_cumprod=alphas_cumprod,
            prediction_type=prediction_type,
            num_train_timesteps=num_train_timesteps,
            sigma_data=EDM_SIGMA_DATA,
            class_labels=labels,
        )  # (B,)
        loss = per_sample.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if ema > 0:  # diffusers' EMAModel warm-up: copy at the first step, then min(ema, (1 + n) / (10 + n))
            decay = min(ema, (1 + step) / (10 + step)) if step > 0 else 0.0
            with torch.no_grad():
                for p_ema, p in zip(ema_model.parameters(), model.parameters()):
                    p_ema.lerp_(p, 1 - decay)
        bucket = _bucket(objective, level.cpu(), buckets, num_train_timesteps)  # (B,) in [0, buckets - 1]
        window_sum.index_add_(0, bucket, per_sample.detach().double().cpu())
        window_count.index_add_(0, bucket, torch.ones(batch_size, dtype=torch.float64))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            by_bucket = (window_sum / window_count.clamp_min(1)).tolist()
            log["step"].append(step + 1)
            log["loss"].append(float(window_sum.sum() / window_count.sum()))
            log["loss_by_bucket"].append([round(v, 6) for v in by_bucket])
            window_sum.zero_()
            window_count.zero_()
            if callback is not None:
                ema_model.eval()
                with torch.no_grad():
                    log["callback"].append(callback(step + 1, ema_model))
                ema_model.train()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    if bar is not None:
        bar.close()

    ema_model.eval()
    record = {
        **config,
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "lr_schedule": f"linear warm-up {warmup} steps, then cosine decay to 0",
        "optimizer": "AdamW(weight_decay=0), grad-norm clip 1.0",
        "label_dropout": label_dropout if train_set is not None else None,
        "ema": ema,
        "num_classes": None if train_set is None else train_set.num_classes,
        "null_label": null,
        "parameters": num_parameters(model),
        "wall_clock_s": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "metrics": {
            "train_loss": log["loss"][-1],
            "train_loss_by_bucket": log["loss_by_bucket"][-1],
            "buckets": _BUCKETS[objective].format(buckets=buckets, last=num_train_timesteps - 1),
        },
        "history": log,
    }
    if objective == "edm":  # how well sigma_data = 0.5 fits: the standard deviation of the training data
        x0_all = (
            data.toy_2d(dataset, 10_000, generator=torch.Generator().manual_seed(seed))
            if train_set is None
            else train_set.images
        )
        record["metrics"]["data_std"] = round(float(x0_all.double().std()), 4)
    return ema_model, record


# ----------------------------------------------------------------------------- the feature classifier


def _shift(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate each image by up to max_shift pixels, filling with the background value -1."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=-1.0)  # (B, C, H + 2s, W + 2s)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train_classifier(
    dataset: str = "digits",
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    max_shift: int = 1,
    progress: bool = False,
) -> tuple[DigitsClassifier, dict[str, Any]]:
    """Train DigitsClassifier with cross-entropy and random shifts; return it (eval mode) and a record with accuracy."""
    for name, value, minimum in (
        ("steps", steps, 1),
        ("batch_size", batch_size, 1),
        ("max_shift", max_shift, 0),
        ("seed", seed, 0),
    ):
        check_int(name, value, minimum=minimum)
    check_choice("dataset", dataset, list(CLASSIFIERS))
    # Colour digits are trained from the grey digits, recoloured at random every batch (stroke hue not
    # linked to the class): a classifier of the class-hued images alone reads the hue, not the digit.
    colour = dataset == "colour_digits"
    train_set, test_set = data.digits("train"), data.load_dataset(dataset, split="test")
    torch.manual_seed(seed)
    model = DigitsClassifier(in_channels=test_set.images.shape[1], num_classes=test_set.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    steps_iter = range(steps)
    if progress:
        from tqdm.auto import tqdm

        steps_iter = tqdm(steps_iter, desc=f"{dataset} classifier")
    start = time.perf_counter()
    model.train()
    for _ in steps_iter:
        index = torch.randint(0, len(train_set.labels), (batch_size,), generator=g)
        x, y = train_set.images[index], train_set.labels[index]  # (B, 1, 8, 8), (B,)
        x = _shift(x, g, max_shift) if max_shift else x
        if colour:
            x = data.colourise(x, *data.colour_digits_hsv(y, generator=g, class_hue=False))  # (B, 3, 16, 16)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval().requires_grad_(False)
    record = {
        "dataset": dataset,
        "kind": "classifier",
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "augmentation": f"random shifts of up to {max_shift} pixels" + (", random colours" if colour else ""),
        "parameters": num_parameters(model),
        "wall_clock_s": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "metrics": {
            "train_accuracy": classifier_accuracy(data.load_dataset(dataset).images, train_set.labels, model),
            "test_accuracy": classifier_accuracy(test_set.images, test_set.labels, model),
        },
    }
    if colour:  # the test split with stroke hues unrelated to the class: the classifier must read shapes
        grey = data.digits("test")
        recoloured = data.colourise(
            grey.images,
            *data.colour_digits_hsv(grey.labels, generator=torch.Generator().manual_seed(seed + 1), class_hue=False),
        )
        record["metrics"]["test_accuracy_random_hues"] = classifier_accuracy(recoloured, grey.labels, model)
    return model, record
