"""Networks, training, checkpoints and the committed models' quality bars.

Oracles: diffusers (the v target, the schedules its schedulers build, its DDIM and DPM-Solver
schedulers driving the same U-Net), the data's own test split (FID floor, nearest-neighbour
distances), and the uniform class distribution of the training data. Sampling uses the package's
DDIM sampler, DiscreteDenoiser and CFGDenoiser; every sample run has a fixed seed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from diffusion_internals import diffusers_compat, sampling, schedules
from diffusion_internals.course import checkpoints, data
from diffusion_internals.course.__main__ import main as train_main
from diffusion_internals.course.checkpoints import load_classifier
from diffusion_internals.course.digits_pipeline import DigitsPipeline
from diffusion_internals.course.evaluation import sample_classes
from diffusion_internals.course.metrics import (
    classifier_accuracy,
    clipping_fraction,
    extract_features,
    frechet_distance,
    nearest_neighbour_distances,
    saturation,
)
from diffusion_internals.course.models import DigitsClassifier, TimestepMLP, class_conditional_unet, null_label
from diffusion_internals.course.production import apply_flaw
from diffusion_internals.course.training import train
from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.parameterization import training_target

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_models.sh"
NAMES = re.search(r"ORDER=\(\n(.*?)\n\)", SCRIPT.read_text(), re.S).group(1).split()  # the script's checkpoints
DIFFUSION_NAMES = [n for n in NAMES if not n.endswith("classifier")]
TINY = ["--channels", "8,16", "--no-evaluate", "--no-progress"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ----------------------------------------------------------------------------- networks


def test_unet_has_a_null_class_and_keeps_the_image_shape():
    unet = class_conditional_unet(in_channels=3, sample_size=16, num_classes=10, block_out_channels=(8, 16, 16))
    assert unet.config.num_class_embeds == 11 and null_label(unet) == 10
    out = unet(torch.randn(2, 3, 16, 16), torch.tensor([0, 999]), class_labels=torch.tensor([3, 10])).sample
    assert out.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="halves evenly"):
        class_conditional_unet(sample_size=8, block_out_channels=(8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="multiples of norm_num_groups"):
        class_conditional_unet(block_out_channels=(12, 16))


def test_timestep_mlp_round_trips_through_save_pretrained(tmp_path):
    torch.manual_seed(0)
    mlp = TimestepMLP(hidden=32, depth=2, num_class_embeds=3).eval()
    x, t, y = torch.randn(5, 2), torch.tensor([0, 1, 10, 500, 999]), torch.tensor([0, 1, 2, 2, 0])
    mlp.save_pretrained(tmp_path)
    again = TimestepMLP.from_pretrained(tmp_path, low_cpu_mem_usage=False).eval()
    torch.testing.assert_close(again(x, t, class_labels=y), mlp(x, t, class_labels=y), rtol=0, atol=0)
    assert not torch.allclose(mlp(x, t, class_labels=y), mlp(x, t + 1, class_labels=y))  # t matters
    with pytest.raises(ValueError, match="class_labels must be given"):
        mlp(x, t)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("t", [0, 250, 999])
def test_v_target_is_diffusers_velocity(t):
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    x0, eps = torch.randn(3, 1, 8, 8, generator=gen(0)), torch.randn(3, 1, 8, 8, generator=gen(1))
    steps = torch.full((3,), t)
    ours = training_target("v_prediction", x0, eps, scheduler.alphas_cumprod[steps].double())
    torch.testing.assert_close(ours, scheduler.get_velocity(x0, eps, steps), rtol=1e-5, atol=1e-6)
    assert training_target("epsilon", x0, eps, 0.5) is eps and training_target("sample", x0, eps, 0.5) is x0
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        training_target("score", x0, eps, 0.5)


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)  # the same initial weights every time
    return class_conditional_unet(block_out_channels=(8, 16))


def test_training_is_repeatable_with_a_seed_and_logs_each_timestep_bucket():
    # Same initial weights; the seed drives every draw of the loop (data, t, eps, label dropout).
    runs = [train("digits", steps=3, batch_size=8, seed=seed, log_every=2, model=tiny_unet()) for seed in (0, 0, 1)]
    (a, record), (b, _), (c, _) = runs
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters()))
    assert record["history"]["step"] == [2, 3] and len(record["metrics"]["train_loss_by_bucket"]) == 10
    assert record["null_label"] == 10 and record["parameters"] == sum(p.numel() for p in a.parameters())


@pytest.mark.parametrize("label_dropout", [0.0, 1.0])
def test_label_dropout_decides_which_class_embeddings_train(label_dropout):
    # Ho & Salimans 2021, Algorithm 1: dropped labels become the null label (10). With no dropout its
    # embedding never gets a gradient; with all labels dropped only it does.
    unet = tiny_unet()
    before = unet.class_embedding.weight.detach().clone()  # (11, D)
    trained, _ = train("digits", steps=2, batch_size=128, ema=0.0, label_dropout=label_dropout, model=unet)
    changed = (trained.class_embedding.weight != before).any(1)  # (11,)
    expected = torch.arange(11) == 10 if label_dropout == 1.0 else torch.arange(11) < 10
    assert changed.tolist() == expected.tolist()


def test_ema_is_diffusers_ema_model_with_its_warm_up():
    from diffusers.training_utils import EMAModel

    # During the learning-rate warm-up the first steps do not depend on the total number of steps, so
    # ema=0 runs of 1 and 2 steps give the online weights after steps 1 and 2.
    online = [train("digits", steps=n, batch_size=8, ema=0.0, model=tiny_unet())[0] for n in (1, 2)]
    averaged, _ = train("digits", steps=2, batch_size=8, ema=0.999, model=tiny_unet())
    oracle = EMAModel(tiny_unet().parameters(), decay=0.999)  # starts from the initial weights
    for model in online:
        oracle.step(model.parameters())  # decay 0 (a copy), then (1 + 1) / (10 + 1)
    for expected, got in zip(oracle.shadow_params, averaged.parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_mlp_learns_a_2d_toy():
    torch.manual_seed(0)
    _, record = train(
        "eight_gaussians",
        steps=400,
        batch_size=256,
        lr=3e-3,
        ema=0.0,
        log_every=50,
        model=TimestepMLP(hidden=64, depth=2),
    )
    losses = record["history"]["loss"]
    assert record["label_dropout"] is None and losses[-1] < 0.7 * losses[0]


def test_train_checks_its_options():
    with pytest.raises(ValueError, match=r"label_dropout must satisfy 0 <= label_dropout <= 1, got 1.5"):
        train("digits", label_dropout=1.5)
    with pytest.raises(ValueError, match="schedule must be one of"):
        train("digits", schedule="quadratic")
    with pytest.raises(ValueError, match="dataset must be one of"):
        train("mnist")


def test_flaws_keep_the_truth_and_refuse_what_they_cannot_fake():
    record = {"schedule": "linear", "prediction_type": "epsilon", "label_dropout": 0.1}
    flawed = apply_flaw(record, "claims-cosine")
    assert flawed["schedule"] == "cosine" and flawed["flaw"]["actual"]["schedule"] == "linear"
    assert record["schedule"] == "linear"  # the input is not changed
    assert apply_flaw(record, "claims-v-prediction")["prediction_type"] == "v_prediction"
    with pytest.raises(ValueError, match="needs label_dropout=0"):
        apply_flaw(record, "no-label-dropout")
    with pytest.raises(ValueError, match="flaw must be one of"):
        apply_flaw(record, "typo")


@pytest.mark.parametrize(("schedule", "zero_snr"), [("linear", False), ("cosine", False), ("linear", True)])
def test_saved_scheduler_builds_the_training_schedule_without_clipping(schedule, zero_snr):
    config = {"schedule": schedule, "zero_snr": zero_snr, "num_train_timesteps": 1000, "prediction_type": "epsilon"}
    scheduler = checkpoints.ddim_scheduler(config)  # diffusers computes these betas itself
    torch.testing.assert_close(
        scheduler.alphas_cumprod.double(), checkpoints.alphas_cumprod_for(config), rtol=2e-5, atol=5e-7
    )
    assert scheduler.config.clip_sample is False
    assert scheduler.config.timestep_spacing == ("trailing" if zero_snr else "leading")


def test_cli_saves_a_checkpoint_that_loads_with_its_configuration(tmp_path):
    out = tmp_path / "client"
    train_main(
        [
            "--dataset",
            "digits",
            "--schedule",
            "linear",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--flaw",
            "claims-cosine",
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "training.json",
        "scheduler_config.json",
    }
    model, config = checkpoints.load_model(out)
    assert isinstance(model, UNet2DModel) and not model.training
    assert config["command"].endswith(f"--out {out} " + " ".join(TINY))
    denoiser = checkpoints.load_denoiser(out)  # believes the (wrong) configuration, as a user would
    cosine = {"schedule": "cosine", "zero_snr": False, "num_train_timesteps": 1000}
    torch.testing.assert_close(denoiser.alphas_cumprod, checkpoints.alphas_cumprod_for(cosine))
    assert config["flaw"]["actual"]["schedule"] == "linear"
    assert json.loads((out / "scheduler_config.json").read_text())["beta_schedule"] == "squaredcos_cap_v2"
    with pytest.raises(FileNotFoundError, match="neither a committed checkpoint"):
        checkpoints.load_model(tmp_path / "missing")


def test_cli_trains_a_classifier(tmp_path):
    train_main(
        [
            "--dataset",
            "digits",
            "--classifier",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    model = load_classifier(str(tmp_path))
    assert isinstance(model, DigitsClassifier) and model.features(torch.zeros(3, 1, 8, 8)).shape == (3, 64)


# ----------------------------------------------------------------------------- the committed checkpoints


def test_committed_checkpoints_are_complete_and_within_the_size_budget():
    assert sorted(checkpoints.checkpoint_names()) == sorted(NAMES)
    total = sum(p.stat().st_size for p in checkpoints.CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 30e6, f"checkpoints take {total / 1e6:.1f} MB, the budget is 30 MB"
    for name in NAMES:
        config = checkpoints.read_training_config(name)
        for key in ("dataset", "steps", "seed", "batch_size", "lr", "parameters", "wall_clock_s", "metrics", "command"):
            assert key in config, (name, key)
        if name in DIFFUSION_NAMES:  # the generative models: diffusion, flow matching (digits-flow), EDM (digits-edm)
            diffusion = checkpoints.objective_of(config) == "diffusion"
            for key in ("schedule", "zero_snr", "prediction_type") if diffusion else ("objective",):
                assert key in config, (name, key)
            for key in ("ema", "label_dropout"):
                assert key in config, (name, key)
            scheduler = json.loads((checkpoints.checkpoint_path(name) / "scheduler_config.json").read_text())
            assert scheduler["clip_sample"] is False if diffusion else "clip_sample" not in scheduler, name
            assert "guidance_3" in config["metrics"], name
        assert ("flaw" in config) == (name in ("digits-cosine-eps-no-dropout", "colour-digits-client")), name


def test_load_denoiser_uses_the_saved_schedule_and_prediction_type():
    zsnr = checkpoints.load_denoiser("digits-linear-v-zsnr")
    assert zsnr.prediction_type == "v_prediction" and zsnr.alphas_cumprod[-1] == 0  # zero terminal SNR
    reference = DDIMScheduler(beta_schedule="linear", rescale_betas_zero_snr=True).alphas_cumprod  # diffusers' own
    torch.testing.assert_close(zsnr.alphas_cumprod, reference.double(), rtol=1e-5, atol=1e-6)
    sqrt = checkpoints.load_denoiser("digits-sqrt-eps")
    assert sqrt.prediction_type == "epsilon"
    torch.testing.assert_close(sqrt.alphas_cumprod, schedules.alphas_cumprod(schedules.make_betas("sqrt")))


def test_digits_classifier_reaches_98_percent_on_the_test_split():
    test = data.digits("test")
    assert classifier_accuracy(test.images, test.labels, load_classifier("digits")) >= 0.98


def test_colour_classifier_reads_shapes_not_hues():
    grey = data.digits("test")
    stroke, background = data.colour_digits_hsv(grey.labels, generator=gen(123), class_hue=False)
    recoloured = data.colourise(grey.images, stroke, background)  # stroke hues unrelated to the class
    classifier = load_classifier("colour_digits")
    assert classifier_accuracy(recoloured, grey.labels, classifier) >= 0.95
    test = data.colour_digits("test")
    assert classifier_accuracy(test.images, test.labels, classifier) >= 0.98


# ----------------------------------------------------------------------------- quality bars (slow)

PER_CLASS = 30  # 300 samples: a 97% bar then allows 9 misses


@pytest.fixture(scope="module")
def guided_samples():
    """50-step DDIM samples at guidance 3 of the cosine and linear digits models, same seed and labels."""
    labels = torch.arange(10).repeat_interleave(PER_CLASS)
    return labels, {
        name: sample_classes(
            checkpoints.load_denoiser(name), labels, guidance_scale=3.0, steps=50, generator=gen(0)
        ).clamp(-1, 1)
        for name in ("digits-cosine-eps", "digits-linear-eps")
    }


@pytest.mark.slow
def test_cosine_model_at_guidance_3_draws_the_requested_digit(guided_samples):
    labels, samples = guided_samples
    assert classifier_accuracy(samples["digits-cosine-eps"], labels, load_classifier("digits")) >= 0.97


@pytest.mark.slow
def test_cosine_model_has_a_lower_digits_fid_than_linear(guided_samples):
    _, samples = guided_samples
    classifier = load_classifier("digits")
    reference = extract_features(data.digits("test").images, classifier.features)
    fid = {name: frechet_distance(extract_features(x, classifier.features), reference) for name, x in samples.items()}
    assert fid["digits-cosine-eps"] < fid["digits-linear-eps"], fid


@pytest.fixture(scope="module")
def unconditional_samples():
    """1000 samples of the cosine digits model at guidance 0, 25-step DDIM, clipped to [-1, 1]."""
    # Guidance 0 is the unconditional model: CFGDenoiser at scale 0 returns its null-label pass exactly,
    # so we call the denoiser with the null label directly (one pass instead of two).
    denoiser = checkpoints.load_denoiser("digits-cosine-eps")
    n = 1000
    null = torch.full((n,), null_label(denoiser.model))
    return sampling.sample(
        denoiser,
        (n, 1, 8, 8),
        sampler="ddim",
        steps=25,
        schedule="leading",
        generator=gen(1),
        extra_args={"class_labels": null},
    ).clamp(-1, 1)


@pytest.mark.slow
def test_unconditional_samples_cover_the_classes_evenly(unconditional_samples):
    # Tolerance: with n = 1000 the binomial standard deviation of a class share near 0.1 is 0.0095, so
    # 5 points is 5.3 of them; an even model fails this by chance with probability ~1e-6 (10 classes).
    predicted = extract_features(unconditional_samples, load_classifier("digits")).argmax(1)
    shares = torch.bincount(predicted, minlength=10).double() / len(predicted)
    assert (shares - 0.1).abs().max() <= 0.05, shares.tolist()


@pytest.mark.slow
def test_samples_are_not_copies_of_the_training_set(unconditional_samples):
    # The test split is what new digits from the same distribution look like: the model's samples
    # should be at least as far from their nearest training image as held-out real digits are.
    # (Guided samples sit nearer the class modes, so they are nearer to every real digit; that is
    # guidance trading diversity for fidelity, so the check is made on the unguided model.)
    train_images = data.digits("train").images
    held_out = nearest_neighbour_distances(data.digits("test").images, train_images).median()
    generated = nearest_neighbour_distances(unconditional_samples, train_images).median()
    assert generated >= held_out, (float(generated), float(held_out))


@pytest.mark.slow
def test_model_trained_without_label_dropout_has_no_unconditional_model(unconditional_samples):
    # Its null label was never seen in training, so its "unconditional" samples (guidance 0) are far
    # from the digits, while the same recipe with dropout 0.1 gives digits.
    denoiser = checkpoints.load_denoiser("digits-cosine-eps-no-dropout")
    n = len(unconditional_samples)
    null = torch.full((n,), null_label(denoiser.model))
    flawed = sampling.sample(
        denoiser,
        (n, 1, 8, 8),
        sampler="ddim",
        steps=25,
        schedule="leading",
        generator=gen(1),
        extra_args={"class_labels": null},
    ).clamp(-1, 1)
    features = load_classifier("digits").features
    reference = extract_features(data.digits("test").images, features)
    fid_flawed = frechet_distance(extract_features(flawed, features), reference)
    fid_sound = frechet_distance(extract_features(unconditional_samples, features), reference)
    assert fid_flawed > 3 * fid_sound, (fid_flawed, fid_sound)


@pytest.mark.slow
def test_strong_guidance_oversaturates_colour_digits():
    # Chapter 5: the test split has mean HSV saturation 0.55 and no clipped values; strong guidance
    # pushes strokes past the colour range.
    denoiser, labels = checkpoints.load_denoiser("colour-digits-cosine-eps"), torch.arange(10).repeat(5)
    x1, x7 = (sample_classes(denoiser, labels, guidance_scale=w, steps=25, generator=gen(0)) for w in (1.0, 7.0))
    assert saturation(x7) > saturation(x1) + 0.1, (saturation(x1), saturation(x7))
    assert clipping_fraction(x7) > 0.03 > clipping_fraction(x1), (clipping_fraction(x1), clipping_fraction(x7))


@pytest.mark.slow
def test_client_model_is_wrecked_by_its_shipped_schedule_and_fine_with_the_true_one():
    # Project C: load_denoiser believes the shipped config (cosine); training.json["flaw"] has the truth.
    shipped = checkpoints.load_denoiser("colour-digits-client")
    config = checkpoints.read_training_config("colour-digits-client")
    true_config = {**config, **config["flaw"]["actual"]}
    honest = DiscreteDenoiser(
        shipped.model, checkpoints.alphas_cumprod_for(true_config), prediction_type=true_config["prediction_type"]
    )
    labels, classifier = torch.arange(10).repeat(5), load_classifier("colour_digits")
    accuracy = {
        name: classifier_accuracy(
            sample_classes(d, labels, guidance_scale=1.0, steps=25, generator=gen(0)).clamp(-1, 1), labels, classifier
        )
        for name, d in (("shipped", shipped), ("true", honest))
    }
    assert accuracy["true"] >= 0.9 and accuracy["shipped"] <= 0.75, accuracy


# ----------------------------------------------------------------------------- the diffusers pipeline (slow)


@pytest.mark.slow
@pytest.mark.parametrize("guidance_scale", [3.0, 1.0, 0.0])  # 1 and 0 take the pipeline's one-pass shortcut
def test_pipeline_with_its_ddim_config_reproduces_the_package_sampler(guidance_scale):
    pipe = DigitsPipeline.from_checkpoint("digits-cosine-eps")
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(10).repeat(2)
    ours = sample_classes(
        checkpoints.load_denoiser("digits-cosine-eps"),
        labels,
        guidance_scale=guidance_scale,
        steps=50,
        generator=gen(7),
    )
    theirs = pipe(labels, num_inference_steps=50, guidance_scale=guidance_scale, generator=gen(7)).images
    torch.testing.assert_close(theirs, ours, rtol=0, atol=2e-3)


def test_pipeline_with_an_euler_scheduler_reproduces_the_package_sampler():
    # Euler-type schedulers scale the initial noise by init_noise_sigma, which is only right after
    # set_timesteps (it is the inference grid's sigma_max); the pipeline once drew it before.
    pipe = DigitsPipeline.from_checkpoint("digits-linear-eps")
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers_compat.diffusers_scheduler("Euler", pipe.scheduler)  # keeps the saved "leading" spacing
    labels = torch.arange(10)
    theirs = pipe(labels, num_inference_steps=20, guidance_scale=1.0, generator=gen(3)).images
    ours = sampling.sample(
        checkpoints.load_denoiser("digits-linear-eps"),
        (10, 1, 8, 8),
        sampler="euler",
        steps=20,
        schedule="leading",
        generator=gen(3),
        extra_args={"class_labels": labels},
    )
    torch.testing.assert_close(theirs, ours, rtol=0, atol=2e-3)


@pytest.mark.slow
def test_pipeline_takes_other_diffusers_schedulers_and_shows_the_clip_sample_trap():
    pipe = DigitsPipeline.from_checkpoint("digits-cosine-eps")
    pipe.set_progress_bar_config(disable=True)
    labels, classifier = torch.arange(10).repeat(10), load_classifier("digits")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    dpm = pipe(labels, num_inference_steps=20, guidance_scale=3.0, generator=gen(0)).images
    assert classifier_accuracy(dpm.clamp(-1, 1), labels, classifier) >= 0.95
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=True)  # diffusers' default
    clipped = pipe(labels, num_inference_steps=50, guidance_scale=3.0, generator=gen(0)).images
    assert classifier_accuracy(clipped.clamp(-1, 1), labels, classifier) < 0.5
    # "trailing" starts at t = 999, where cosine alpha_bar ~ 2e-9: an eps model's x0_hat there is ~1e4 x eps error.
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="trailing")
    assert pipe(labels[:20], num_inference_steps=50, guidance_scale=3.0, generator=gen(0)).images.abs().max() > 100


@pytest.mark.slow
def test_zero_terminal_snr_model_samples_from_pure_noise_with_trailing_spacing():
    pipe = DigitsPipeline.from_checkpoint("digits-linear-v-zsnr")  # its config: trailing, rescaled betas, v
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(25)
    assert int(pipe.scheduler.timesteps[0]) == 999 and float(pipe.scheduler.alphas_cumprod[999]) == 0.0
    labels = torch.arange(10).repeat(10)
    images = pipe(labels, num_inference_steps=25, guidance_scale=3.0, generator=gen(0)).images
    assert classifier_accuracy(images.clamp(-1, 1), labels, load_classifier("digits")) >= 0.95
