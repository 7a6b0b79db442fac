"""Saved models: the committed checkpoints, their training configuration, and loaders that use it.

A checkpoint is a folder (``src/diffusion_internals/course/checkpoints/<name>/`` for the committed ones,
rebuilt by ``scripts/train_models.sh``) holding

* ``config.json`` + ``diffusion_pytorch_model.safetensors``: the network, diffusers' ``save_pretrained``;
* ``training.json``: how it was trained (data set, objective, schedule, zero_snr, prediction type, steps,
  seed, batch size, lr, EMA, label dropout, parameter count, wall-clock seconds) and its metrics;
* ``scheduler_config.json`` (generative models): the diffusers scheduler of its family (:func:`scheduler_for`),
  a ``DDIMScheduler`` for the same schedule with ``clip_sample=False`` for a discrete-time diffusion model.

The ``"objective"`` entry of training.json names the family (``OBJECTIVES``); checkpoints saved before it
existed have none and are diffusion models:

* ``"diffusion"``: a network on a discrete variance-preserving schedule predicting eps, v or x0 (Ho et al.
  2020), read as a ``DiscreteDenoiser``;
* ``"flow"``: a rectified-flow velocity network called at timestep ``t * num_train_timesteps``
  (Esser et al. 2024), read as a ``FlowDenoiser``;
* ``"edm"``: the network F of EDM's preconditioning, called as ``F(c_in x, c_noise)`` (Karras et al. 2022),
  read as an ``EDMDenoiser`` with the checkpoint's ``sigma_data``.

A checkpoint with a ``"flaw"`` entry in training.json (Project C) was saved with a configuration that
does not match its training on purpose; ``flaw["actual"]`` holds the true values. The loaders here
believe the configuration, as a user of a published model would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from diffusion_internals import schedules
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.flow import FlowDenoiser
from diffusion_internals.parameterization import PREDICTION_TYPES
from diffusion_internals.preconditioning import EDM_SIGMA_MAX, EDM_SIGMA_MIN, EDMDenoiser
from diffusion_internals.validation import check_choice

__all__ = [
    "CHECKPOINTS",
    "OBJECTIVES",
    "objective_of",
    "checkpoint_names",
    "checkpoint_path",
    "alphas_cumprod_for",
    "ddim_scheduler",
    "scheduler_for",
    "save_checkpoint",
    "read_training_config",
    "load_model",
    "load_denoiser",
    "CLASSIFIERS",
    "load_classifier",
]

CHECKPOINTS = Path(__file__).resolve().parent  # the committed checkpoints are the folders beside this file
TRAINING_JSON = "training.json"
CLASSIFIERS = {"digits": "digits-classifier", "colour_digits": "colour-digits-classifier"}  # committed names
OBJECTIVES = ("diffusion", "flow", "edm")  # the model families a checkpoint can hold (training.json "objective")
# diffusers' names of the schedules it builds itself; the others are passed as trained_betas.
_DIFFUSERS_BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


def checkpoint_names() -> list[str]:
    """The names of the committed checkpoints (folders of CHECKPOINTS with a training.json)."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / TRAINING_JSON).is_file())


def checkpoint_path(name_or_path: str | os.PathLike) -> Path:
    """The folder of a committed checkpoint by name, or a folder path holding a training.json."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a checkpoint name or a folder path, got {type(name_or_path).__name__}")
    for folder in (CHECKPOINTS / str(name_or_path), Path(name_or_path)):
        if (folder / TRAINING_JSON).is_file():
            return folder
    raise FileNotFoundError(
        f"name_or_path={str(name_or_path)!r} is neither a committed checkpoint "
        f"{checkpoint_names()} nor a folder with a {TRAINING_JSON} (train one with "
        f"python -m diffusion_internals.course, "
        f"or rebuild the committed ones with scripts/train_models.sh)"
    )


def read_training_config(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The training.json of a checkpoint as a dict."""
    return json.loads((checkpoint_path(name_or_path) / TRAINING_JSON).read_text())


def objective_of(config: dict[str, Any]) -> str:
    """The model family of a training config, one of OBJECTIVES; "diffusion" for configs saved before the key."""
    return check_choice("config['objective']", config.get("objective", "diffusion"), OBJECTIVES)


def alphas_cumprod_for(config: dict[str, Any]) -> torch.Tensor:
    """float64 alphas_cumprod of a config's schedule (or trained_betas), rescaled if zero_snr (Lin et al. 2024)."""
    objective = objective_of(config)
    if objective != "diffusion":
        raise ValueError(
            f"config['objective'] must be 'diffusion' for alphas_cumprod (a discrete variance-preserving schedule), "
            f"got {objective!r}: a {objective} model has no beta schedule; read it with load_denoiser"
        )
    try:
        kind, zero_snr, steps = config["schedule"], config["zero_snr"], config["num_train_timesteps"]
    except KeyError as missing:
        raise ValueError(f"config must have schedule, zero_snr and num_train_timesteps, missing {missing}") from None
    betas = (
        torch.tensor(config["trained_betas"], dtype=torch.float64)
        if kind == "custom"
        else schedules.make_betas(kind, steps)
    )
    if zero_snr:
        betas = schedules.rescale_zero_terminal_snr(betas)
    return schedules.alphas_cumprod(betas)


def ddim_scheduler(config: dict[str, Any]) -> Any:
    """diffusers' DDIMScheduler for a training config, clip_sample=False; trailing with zero_snr (Lin et al. 2024)."""
    from diffusers import DDIMScheduler

    check_choice("config['prediction_type']", config.get("prediction_type"), PREDICTION_TYPES)
    kind = config["schedule"]
    betas: dict[str, Any] = (
        {"beta_schedule": _DIFFUSERS_BETA_SCHEDULES[kind]}
        if kind in _DIFFUSERS_BETA_SCHEDULES
        else {
            "trained_betas": config["trained_betas"]
            if kind == "custom"
            else schedules.make_betas(kind, config["num_train_timesteps"]).tolist()
        }
    )
    return DDIMScheduler(
        num_train_timesteps=config["num_train_timesteps"],
        **betas,
        # diffusers' default clip_sample=True clamps x0_hat to [-1, 1] at every step: with CFG on the
        # cosine schedule that drives class accuracy below chance at scale 3.
        clip_sample=False,
        prediction_type=config["prediction_type"],
        rescale_betas_zero_snr=bool(config["zero_snr"]),
        # "trailing" starts at t = T - 1, which only a zero-terminal-SNR model has seen as pure noise;
        # for cosine, alpha_bar_{T-1} ~ 2e-9 and an eps model's x0_hat there is eps error times ~2e4.
        timestep_spacing="trailing" if config["zero_snr"] else "leading",
    )


def scheduler_for(config: dict[str, Any]) -> Any:
    """diffusers' scheduler of a config's family: DDIM, FlowMatchEulerDiscrete (Esser 2024), EDMEuler (Karras 2022)."""
    objective = objective_of(config)
    if objective == "diffusion":
        return ddim_scheduler(config)
    if objective == "flow":
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=config["num_train_timesteps"], shift=1.0)
    from diffusers import EDMEulerScheduler

    # diffusers' prediction_type "epsilon" is c_out = +sigma sigma_data / sqrt(sigma^2 + sigma_data^2), EDM's own
    # F (its precondition_outputs); "v_prediction" flips the sign.
    return EDMEulerScheduler(
        sigma_min=EDM_SIGMA_MIN, sigma_max=EDM_SIGMA_MAX, sigma_data=config["sigma_data"], prediction_type="epsilon"
    )


def _is_generative(config: dict[str, Any]) -> bool:
    return "objective" in config or "prediction_type" in config  # a classifier's config has neither


def save_checkpoint(model: torch.nn.Module, config: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write model.save_pretrained(out), training.json and, for a generative model, scheduler_config.json."""
    out = Path(out)
    model.save_pretrained(out)
    (out / TRAINING_JSON).write_text(json.dumps(config, indent=1) + "\n")
    if _is_generative(config):
        scheduler_for(config).save_pretrained(out)
    return out


def load_model(name_or_path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(network in eval mode without gradients, training config) of a checkpoint, by the class named in config.json."""
    folder = checkpoint_path(name_or_path)
    class_name = json.loads((folder / "config.json").read_text()).get("_class_name")
    if class_name == "UNet2DModel":
        from diffusers import UNet2DModel as cls
    elif class_name == "TimestepMLP":
        from diffusion_internals.course.models import TimestepMLP as cls
    elif class_name == "DigitsClassifier":
        from diffusion_internals.course.models import DigitsClassifier as cls
    else:
        raise ValueError(
            f"{folder}/config.json names class {class_name!r}; known: UNet2DModel, TimestepMLP, DigitsClassifier"
        )
    model = cls.from_pretrained(folder, low_cpu_mem_usage=False).eval().requires_grad_(False)
    return model, read_training_config(folder)


def load_denoiser(name_or_path: str | os.PathLike) -> DiscreteDenoiser | FlowDenoiser | EDMDenoiser:
    """The denoiser D(x, sigma) of a checkpoint's family, its network in the dtype of its weights (Karras 2022)."""
    model, config = load_model(name_or_path)
    if not _is_generative(config):
        raise ValueError(
            f"{name_or_path} is not a generative model (no objective or prediction_type in its {TRAINING_JSON})"
        )
    objective = objective_of(config)  # the network runs in its own dtype, whatever the sampler's state
    if objective == "flow":
        return FlowDenoiser(model, num_train_timesteps=config["num_train_timesteps"], dtype=model.dtype)
    if objective == "edm":
        return EDMDenoiser(model, sigma_data=config["sigma_data"], dtype=model.dtype)  # EDM's sampling range
    return DiscreteDenoiser(
        model, alphas_cumprod_for(config), prediction_type=config["prediction_type"], dtype=model.dtype
    )


def load_classifier(dataset_or_path: str = "digits") -> torch.nn.Module:
    """The committed classifier of a data set ("digits", "colour_digits"), or one saved at a path, in eval mode."""
    return load_model(CLASSIFIERS.get(dataset_or_path, dataset_or_path))[0]
