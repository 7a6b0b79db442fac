"""The committed flow-matching and EDM digits checkpoints: what they hold, how they load, how well they sample.

Oracles: diffusers' FlowMatchEulerDiscreteScheduler and EDMEulerScheduler, loaded from each checkpoint's own
scheduler_config.json, driving the same U-Net in diffusers' Euler loop (the package samples with DDIM at eta 0,
which in the sigma view is that Euler step); the committed digits classifier for class accuracy; the training
commands of scripts/train_models.sh.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import diffusers
import pytest
import torch

from diffusion_internals import sampling
from diffusion_internals.course import checkpoints
from diffusion_internals.course.__main__ import main as train_main
from diffusion_internals.course.digits_pipeline import DigitsPipeline
from diffusion_internals.course.evaluation import default_schedule, sample_classes
from diffusion_internals.course.metrics import classifier_accuracy
from diffusion_internals.flow import FlowDenoiser
from diffusion_internals.preconditioning import EDMDenoiser

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "scripts" / "train_models.sh").read_text()
FAMILIES = {  # name: (objective, denoiser class, diffusers scheduler class)
    "digits-flow": ("flow", FlowDenoiser, diffusers.FlowMatchEulerDiscreteScheduler),
    "digits-edm": ("edm", EDMDenoiser, diffusers.EDMEulerScheduler),
}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_records_its_command_and_metrics_and_loads_as_its_family(name):
    objective, denoiser_class, _ = FAMILIES[name]
    folder = checkpoints.checkpoint_path(name)
    size = (folder / "diffusion_pytorch_model.safetensors").stat().st_size
    assert size < 4e6, f"{name}: {size / 1e6:.2f} MB, the budget is 4 MB"
    config = checkpoints.read_training_config(name)
    args = re.search(rf"\[{name}\]=\"([^\"]+)\"", SCRIPT).group(1)  # the script's arguments for this name
    assert config["command"] == f"python -m diffusion_internals.course {args} --out {folder.relative_to(ROOT)}"
    assert config["objective"] == objective and config["wall_clock_s"] > 0
    assert config["metrics"]["guidance_3"]["accuracy"] >= 0.97, config["metrics"]["guidance_3"]
    denoiser = checkpoints.load_denoiser(name)
    assert type(denoiser) is denoiser_class and denoiser.dtype == torch.float32
    if objective == "edm":
        assert denoiser.sigma_data == config["sigma_data"] == 0.5 and "data_std" in config["metrics"]
    else:
        assert denoiser.num_train_timesteps == config["num_train_timesteps"] == 1000


def check_scheduler_config(folder: Path, objective: str) -> None:
    """The folder's scheduler_config.json loads with the diffusers class it names, configured for the family."""
    named = json.loads((folder / "scheduler_config.json").read_text())["_class_name"]
    assert getattr(diffusers, named) is FAMILIES[f"digits-{objective}"][2]
    config = getattr(diffusers, named).from_pretrained(folder).config
    if objective == "flow":
        assert (config.num_train_timesteps, config.shift, config.use_dynamic_shifting) == (1000, 1.0, False)
    else:  # diffusers' "epsilon" is c_out = +sigma sigma_data / sqrt(sigma^2 + sigma_data^2): EDM's own F
        assert (config.sigma_min, config.sigma_max, config.sigma_data) == (0.002, 80.0, 0.5)
        assert (config.prediction_type, config.sigma_schedule, config.rho) == ("epsilon", "karras", 7.0)


@pytest.mark.parametrize("name", FAMILIES)
def test_saved_scheduler_config_loads_with_the_diffusers_class_it_names(name):
    check_scheduler_config(checkpoints.checkpoint_path(name), FAMILIES[name][0])


@pytest.mark.parametrize("name", FAMILIES)
def test_diffusers_euler_with_the_saved_scheduler_matches_the_package_ddim_on_the_familys_grid(name):
    # DDIM at eta 0 in the sigma view is Euler; the family's grid is diffusers' own for both schedulers.
    _, _, scheduler_class = FAMILIES[name]
    unet, _ = checkpoints.load_model(name)
    scheduler = scheduler_class.from_pretrained(checkpoints.checkpoint_path(name))
    labels, steps, shape = torch.arange(10), 12, (10, 1, 8, 8)
    scheduler.set_timesteps(steps)
    x = torch.randn(shape, generator=gen(5)) * getattr(scheduler, "init_noise_sigma", 1.0)  # flow: t = 1, pure noise
    with torch.no_grad():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x  # EDM: c_in x
            x = scheduler.step(unet(x_in, t, class_labels=labels).sample, t, x).prev_sample
    denoiser = checkpoints.load_denoiser(name)
    ours = sampling.sample(
        denoiser,
        shape,
        sampler="ddim",
        steps=steps,
        schedule=default_schedule(denoiser),
        init_noise="vp",  # EDM: sqrt(1 + sigma_max^2) z, diffusers' init_noise_sigma; flow starts at z itself
        generator=gen(5),
        extra_args={"class_labels": labels},
    )
    assert x.abs().max() > 0.5  # not a trivial agreement
    torch.testing.assert_close(ours, x, rtol=0, atol=2e-3)


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_at_guidance_3_are_the_requested_digits(name):
    # A re-measurement with other noise than training.json's (seed 0): 10 per class, 25 steps on the family's grid.
    labels = torch.arange(10).repeat_interleave(10)
    samples = sample_classes(checkpoints.load_denoiser(name), labels, guidance_scale=3.0, steps=25, generator=gen(11))
    accuracy = classifier_accuracy(samples.clamp(-1, 1), labels, checkpoints.load_classifier("digits"))
    assert accuracy >= 0.9, accuracy


@pytest.mark.parametrize("objective", ["flow", "edm"])
def test_cli_saves_a_checkpoint_of_each_family_with_its_scheduler(objective, tmp_path):
    out = tmp_path / objective
    train_main(
        ["--dataset", "digits", "--objective", objective, "--steps", "2", "--batch-size", "4", "--out", str(out)]
        + ["--channels", "8,16", "--no-evaluate", "--no-progress"]
    )
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "training.json",
        "scheduler_config.json",
    }
    assert type(checkpoints.load_denoiser(out)) is FAMILIES[f"digits-{objective}"][1]
    check_scheduler_config(out, objective)
    config = checkpoints.read_training_config(out)
    assert config["objective"] == objective and config["metrics"]["buckets"].startswith("10 equal ranges of")
    with pytest.raises(ValueError, match=rf"config\['objective'\] must be 'diffusion'.*got '{objective}'"):
        checkpoints.alphas_cumprod_for(config)
    with pytest.raises(ValueError, match=rf"is a {objective} model: sample it with sampling.sample"):
        DigitsPipeline.from_checkpoint(out)


def test_old_configs_without_an_objective_are_diffusion_models():
    config = checkpoints.read_training_config("digits-cosine-eps")
    assert "objective" not in config and checkpoints.objective_of(config) == "diffusion"
    with pytest.raises(ValueError, match=r"config\['objective'\] must be one of \['diffusion', 'flow', 'edm'\]"):
        checkpoints.objective_of({**config, "objective": "score"})
