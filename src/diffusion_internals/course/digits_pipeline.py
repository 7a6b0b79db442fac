"""A course checkpoint as a diffusers pipeline, so any diffusers scheduler can drive it.

    pipe = DigitsPipeline.from_checkpoint("digits-cosine-eps")
    images = pipe([3, 1, 4], num_inference_steps=50, guidance_scale=3.0,
                  generator=torch.Generator().manual_seed(0)).images  # (3, 1, 8, 8) in [-1, 1]
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)

The loop is diffusers' usual one: ``x_T ~ N(0, init_noise_sigma^2 I)``, then for each timestep one
batched U-Net call on ``[x, x]`` with ``[null, labels]``, classifier-free guidance on the model output
(``uncond + w (cond - uncond)``, Ho & Salimans 2021; for eps or v this equals guidance on x0_hat at a
fixed x), and ``scheduler.step``. With the checkpoint's own ``scheduler_config.json`` (DDIM, eta 0)
it reproduces :func:`diffusion_internals.course.evaluation.sample_classes` on the same noise.

Traps, both handled by the saved scheduler configs (:func:`diffusion_internals.course.checkpoints.ddim_scheduler`):

* ``DDIMScheduler()`` defaults to ``clip_sample=True``, clamping x0_hat to [-1, 1] at every step;
  with CFG on the cosine schedule that wrecks the samples (class accuracy below chance at scale 3).
* ``timestep_spacing="trailing"`` starts at t = 999, pure noise only for a zero-terminal-SNR
  schedule; for cosine alpha_bar_999 ~ 2e-9 and an eps model's first x0_hat is eps error times ~2e4.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from diffusion_internals.course.checkpoints import checkpoint_path, load_model, objective_of
from diffusion_internals.course.models import null_label
from diffusion_internals.validation import check_choice

__all__ = ["DigitsPipeline"]

OUTPUT_TYPES = ("pt", "np", "pil")


class DigitsPipeline(DiffusionPipeline):
    """Class-conditional sampling with CFG from a UNet2DModel and any diffusers scheduler (Ho & Salimans 2021)."""

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin) -> None:
        """Register the U-Net (num_class_embeds = classes + 1, the last the null label) and the scheduler."""
        super().__init__()
        if null_label(unet) is None:
            raise ValueError(
                "unet must be class-conditional: num_class_embeds = classes + 1 (the last is the null label)"
            )
        self.register_modules(unet=unet, scheduler=scheduler)

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike) -> DigitsPipeline:
        """The pipeline of a course checkpoint, with its saved DDIM scheduler config (clip_sample=False)."""
        unet, config = load_model(name_or_path)
        objective = objective_of(config)
        if objective != "diffusion":
            raise ValueError(
                f"DigitsPipeline.from_checkpoint takes a diffusion checkpoint (objective 'diffusion', a DDIM "
                f"scheduler); {name_or_path} is a {objective} model: sample it with "
                f"sampling.sample(checkpoints.load_denoiser(name), ...) or evaluation.sample_classes"
            )
        return cls(unet, DDIMScheduler.from_pretrained(checkpoint_path(name_or_path)))

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Sequence[int] | torch.Tensor,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Samples of the given classes; the null label asks for unconditional ones (Ho & Salimans 2021, Alg. 2)."""
        null = null_label(self.unet)
        labels = torch.as_tensor(class_labels).reshape(-1)
        if labels.dtype.is_floating_point or labels.numel() == 0 or not bool(((labels >= 0) & (labels <= null)).all()):
            raise ValueError(
                f"class_labels must be a non-empty sequence of ints in [0, {null}] ({null} = no class), "
                f"got {labels.tolist()}"
            )
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a number >= 0 (1 = no guidance), got {guidance_scale!r}")
        check_choice("output_type", output_type, OUTPUT_TYPES)
        device, dtype = self.unet.device, self.unet.dtype
        labels = labels.to(device=device, dtype=torch.int64)
        config = self.unet.config
        shape = (len(labels), config.in_channels, config.sample_size, config.sample_size)
        # set_timesteps first: Euler-type schedulers compute init_noise_sigma from the inference grid's
        # largest sigma, and before set_timesteps they report the training grid's (157 instead of 97 for
        # the linear schedule at 20 "leading" steps), which ruins every sample.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn(shape, generator=generator, dtype=dtype).to(device) * self.scheduler.init_noise_sigma
        step_takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        # w = 1 is the conditional model and w = 0 the unconditional one: one U-Net pass, not two (diffusers'
        # pipelines skip the unconditional pass at w <= 1 likewise).
        single = {1: labels, 0: torch.full_like(labels, null)}.get(guidance_scale)
        both_labels = torch.cat([torch.full_like(labels, null), labels])  # (2B,): null first, as CFGDenoiser
        for t in self.progress_bar(self.scheduler.timesteps):
            if single is not None:
                guided = self.unet(self.scheduler.scale_model_input(x, t), t, class_labels=single).sample
            else:
                x_in = self.scheduler.scale_model_input(torch.cat([x, x]), t)  # (2B, C, H, W)
                uncond, cond = self.unet(x_in, t, class_labels=both_labels).sample.chunk(2)
                guided = uncond + guidance_scale * (cond - uncond)
            extra = {"generator": generator} if step_takes_generator else {}
            x = self.scheduler.step(guided, t, x, **extra).prev_sample
        if output_type == "pt":
            images = x  # unclipped, in the model's range [-1, 1] up to overshoot
        else:
            images = ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().float().numpy()  # (B, H, W, C) in [0, 1]
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
