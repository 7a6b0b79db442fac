"""Our own sampling loop around a diffusers Stable Diffusion pipeline's parts.

``generate(pipe, prompt, name="DPM++ 2M Karras")`` does what ``pipe(prompt)`` does, step by step,
with the package's pieces in place of diffusers' loop. ``name`` is a UI sampler name, a key of
:data:`diffusion_internals.sampling.NAMED_SAMPLERS`, as in ``sampling.sample_by_name`` and ``use_sampler``;
``sampler=`` means a key of :data:`~diffusion_internals.sampling.SAMPLERS` everywhere in the package.

1. text encoding: the pipeline's tokenizer and CLIP text encoder (:func:`encode_prompt`), the
   last hidden state of 77 tokens as the U-Net's cross-attention context (Rombach et al. 2022, Sec. 3.3);
2. the U-Net as a denoiser ``D(x, sigma)`` (:class:`~diffusion_internals.denoisers.DiscreteDenoiser`,
   the text embedding passed as ``extra_args``), guided by
   :class:`~diffusion_internals.guidance.CFGDenoiser` (:func:`guided_denoiser`);
3. the name's sampler of :data:`diffusion_internals.sampling.SAMPLERS` on a sigma grid;
4. the VAE decoder on ``latents / vae.config.scaling_factor``.

Where guidance acts (``guidance_space``):

* ``"x0"`` (default): CFGDenoiser around the denoiser, on x0_hat, with every fix (rescale, thresholding,
  interval, APG). For an eps (or v) network plain CFG is the same as diffusers' CFG on the network
  output: at a fixed x, x0_hat is affine in eps, so it commutes with uncond + w (cond - uncond).
* ``"model_output"``: CFGDenoiser around the U-Net itself, inside the DiscreteDenoiser: CFG and the rescale
  act on eps (or v), which is what diffusers' ``guidance_rescale`` does (``rescale_noise_cfg``). The
  rescale is not linear, so the two spaces differ once ``rescale > 0``: std(x - sigma eps) is not
  sigma std(eps). CFGDenoiser's arithmetic does not care what it guides; its sigma is then the U-Net's
  timestep, so the fixes that read sigma or assume x0 (interval, thresholding, APG) are refused here.

The grid (``schedule=None``) is the one diffusers' scheduler for the name uses, built from the
pipeline's current scheduler config (:func:`diffusion_internals.diffusers_compat.diffusers_scheduler`), so that with the
same initial latents ``generate`` and ``use_sampler(pipe, name)(...)`` run the same algorithm. Two
known differences remain, both tested: SD's scheduler config has ``set_alpha_to_one=False``, so
diffusers' DDIM ends at sigma(t=0) = 0.029 instead of 0; and diffusers turns guidance off for
``guidance_scale <= 1`` where CFGDenoiser interpolates towards the unconditional model below 1.

``use_sampler`` builds every scheduler from the pipeline's *original* scheduler config, the one it had before
the first swap, never from the scheduler of the previous swap: a swap depends on that config and the name only.
It keeps that config in the config of each scheduler it installs, under the key ``ORIGINAL_CONFIG``; a scheduler
without the key (the pipeline's own, or one you install yourself) is the original of the next swap. diffusers'
``from_config`` keeps the key, so a scheduler built by hand from a swapped one's config is swapped from the
same original.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from diffusion_internals.denoisers import DiscreteDenoiser
from diffusion_internals.diffusers_compat import diffusers_scheduler, diffusers_sigmas
from diffusion_internals.guidance import APG, CFGDenoiser
from diffusion_internals.samplers.common import Callback
from diffusion_internals.sampling import SAMPLERS, resolve, sigmas_for
from diffusion_internals.utils import Generators, randn_like
from diffusion_internals.validation import check_choice, check_int

__all__ = [
    "GUIDANCE_SPACES",
    "OUTPUT_TYPES",
    "ORIGINAL_CONFIG",
    "use_sampler",
    "encode_prompt",
    "guided_denoiser",
    "grid",
    "decode",
    "generate",
]

GUIDANCE_SPACES = ("x0", "model_output")
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# The config key under which use_sampler keeps the pipeline's scheduler config from before the first swap.
ORIGINAL_CONFIG = "_original_config"


def use_sampler(pipe: Any, name: str) -> Any:
    """Give pipe diffusers' scheduler for a UI name ("DPM++ 2M Karras"), from its original config; returns pipe."""
    config = pipe.scheduler.config
    original = dict(config.get(ORIGINAL_CONFIG) or config)  # the config before the first swap
    scheduler = diffusers_scheduler(name, original)  # unknown names raise, listing the known ones
    # diffusers_scheduler passes on only the keys the new class takes; keep the others in its config, as
    # diffusers' from_config does, so that DDIMScheduler.from_config(pipe.scheduler.config) still finds
    # clip_sample=False after a swap to Euler.
    scheduler.register_to_config(
        **{key: value for key, value in original.items() if key not in scheduler.config and not key.startswith("_")},
        **{ORIGINAL_CONFIG: original},
    )
    if getattr(scheduler.config, "clip_sample", False):
        warnings.warn(
            f"{type(scheduler).__name__} has clip_sample=True (the pipeline's scheduler config does "
            f"not set it): every x0_hat is clamped to [-1, 1], which damages Stable Diffusion latents. Use "
            f"a config with clip_sample=False",
            stacklevel=2,
        )
    pipe.scheduler = scheduler
    return pipe


def _prompts(value: str | Sequence[str], name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{name} must be a string or a non-empty list of strings, got {value!r}")


def _embed(pipe: Any, texts: list[str]) -> torch.Tensor:
    """The text encoder's last hidden state (B, 77, D) of texts padded to the tokenizer's length."""
    tokens = pipe.tokenizer(
        texts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    device = pipe.text_encoder.device
    use_mask = getattr(pipe.text_encoder.config, "use_attention_mask", False)  # False for SD 1.x's CLIP
    mask = tokens.attention_mask.to(device) if use_mask else None
    return pipe.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]  # (B, 77, D)


@torch.no_grad()
def encode_prompt(
    pipe: Any, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) CLIP text embeddings (B, 77, D); uncond of "" if negative_prompt is None (Rombach et al. 2022)."""
    prompts = _prompts(prompt, "prompt")
    negatives = [""] * len(prompts) if negative_prompt is None else _prompts(negative_prompt, "negative_prompt")
    if len(negatives) == 1:
        negatives = negatives * len(prompts)
    if len(negatives) != len(prompts):
        raise ValueError(f"negative_prompt must be one string or one per prompt ({len(prompts)}), got {len(negatives)}")
    dtype = pipe.unet.dtype
    return _embed(pipe, prompts).to(dtype), _embed(pipe, negatives).to(dtype)  # two calls, as diffusers makes


def _alphas_cumprod(pipe: Any) -> torch.Tensor:
    """The training schedule of the pipeline's scheduler, the very float32 values diffusers uses, as float64."""
    return pipe.scheduler.alphas_cumprod.double()


def _network(unet: Any):
    """The U-Net as a function (x_t, t, **cond) -> its raw output (eps or v), x_t cast to the U-Net's dtype."""

    # The cast is here, at the U-Net, rather than DiscreteDenoiser(dtype=unet.dtype): with guidance_space=
    # "model_output" a CFGDenoiser sits between the two and would carry the timesteps t in float16 (steps of
    # 0.5 near t = 999). DiscreteDenoiser feeds this function x's dtype, float32 (its default, dtype=None).
    def network(x_t: torch.Tensor, t: torch.Tensor, **cond: Any) -> torch.Tensor:
        return unet(x_t.to(unet.dtype), t, **cond, return_dict=False)[0]  # (B, 4, h, w)

    return network


def guided_denoiser(
    pipe: Any,
    uncond: torch.Tensor,
    *,
    guidance_scale: float,
    guidance_space: str = "x0",
    quantize: bool = True,
    rescale: float = 0.0,
    threshold: float | None = None,
    threshold_max_value: float = 1.0,
    interval: tuple[float, float] | None = None,
    apg: APG | None = None,
) -> Any:
    """D(x, sigma, encoder_hidden_states=cond) of the pipeline's U-Net, CFG against uncond (Ho & Salimans 2021)."""
    check_choice("guidance_space", guidance_space, GUIDANCE_SPACES)
    # guidance_scale and the fixes are checked by CFGDenoiser.
    network, options = _network(pipe.unet), {"uncond": {"encoder_hidden_states": uncond}, "rescale": rescale}

    def discrete(model: Any) -> DiscreteDenoiser:
        prediction_type = pipe.scheduler.config.prediction_type  # "epsilon" for SD 1.x, "v_prediction" for 2.x
        return DiscreteDenoiser(model, _alphas_cumprod(pipe), prediction_type=prediction_type, quantize=quantize)

    if guidance_space == "model_output":
        refused = {
            name: value
            for name, value in (("threshold", threshold), ("interval", interval), ("apg", apg))
            if value is not None
        }
        if refused:
            raise ValueError(
                f"guidance_space='model_output' guides eps (or v) at the U-Net's timestep, where "
                f"{sorted(refused)} mean nothing; use guidance_space='x0' for them (got {refused})"
            )
        return discrete(CFGDenoiser(network, guidance_scale, **options))
    return CFGDenoiser(
        discrete(network),
        guidance_scale,
        threshold=threshold,
        threshold_max_value=threshold_max_value,
        interval=interval,
        apg=apg,
        **options,
    )


def grid(pipe: Any, name: str, steps: int, *, schedule: str | None = None) -> tuple[torch.Tensor, bool, float]:
    """(sigmas ending in 0, quantize, init scale): diffusers' grid for a UI name, or sampling.sigmas_for(schedule)."""
    recipe = resolve(name)  # unknown names raise, listing the known ones
    check_int("steps", steps, minimum=1)
    if schedule is None:
        try:  # from the pipeline's current config, as pipe(...) runs it
            scheduler = diffusers_scheduler(name, pipe.scheduler)
        except ValueError:  # no diffusers scheduler for this name: its own schedule (NAMED_SAMPLERS)
            schedule = recipe.schedule
    if schedule is not None:
        sigmas = sigmas_for(DiscreteDenoiser(pipe.unet, _alphas_cumprod(pipe)), steps, schedule=schedule)
        return sigmas, False, math.sqrt(1 + float(sigmas[0]) ** 2)  # continuous t, as k-diffusion
    scheduler.set_timesteps(steps)
    sigmas = diffusers_sigmas(scheduler)
    # The U-Net sees the timesteps diffusers gives it: quantize exactly when those are integers.
    timesteps = scheduler.timesteps.double()
    quantize = bool((timesteps == timesteps.round()).all())
    # diffusers' initial latents are z * init_noise_sigma. Schedulers that carry the VP sample (DDIM, DPM-Solver,
    # UniPC: init_noise_sigma = 1) start at x_VP = z, our x = x_VP sqrt(1 + sigma_0^2); Euler-type ones carry x
    # itself and start at z * init_noise_sigma (sqrt(1 + sigma_max^2) or sigma_max, by timestep spacing).
    init = float(scheduler.init_noise_sigma)
    return sigmas, quantize, math.sqrt(1 + float(sigmas[0]) ** 2) if init == 1.0 else init


@torch.no_grad()
def decode(pipe: Any, latents: torch.Tensor, output_type: str = "pil") -> Any:
    """Images from clean latents: the VAE decoder on latents / scaling_factor, then diffusers' postprocessing."""
    check_choice("output_type", output_type, OUTPUT_TYPES)
    if output_type == "latent":
        return latents
    vae = pipe.vae
    image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]  # (B, 3, H, W)
    return pipe.image_processor.postprocess(image, output_type=output_type)  # [-1, 1] -> [0, 1], as pipe()


@torch.no_grad()
def generate(
    pipe: Any,
    prompt: str | Sequence[str],
    *,
    name: str = "DPM++ 2M Karras",
    steps: int = 30,
    guidance_scale: float = 7.5,
    negative_prompt: str | Sequence[str] | None = None,
    guidance_space: str = "x0",
    rescale: float = 0.0,
    threshold: float | None = None,
    threshold_max_value: float = 1.0,
    interval: tuple[float, float] | None = None,
    apg: APG | None = None,
    schedule: str | None = None,
    height: int | None = None,
    width: int | None = None,
    latents: torch.Tensor | None = None,
    generator: Generators = None,
    output_type: str = "pil",
    callback: Callback | None = None,
    progress: bool = False,
) -> Any:
    """Text to image: our sampler, CFG and denoiser around the pipeline's parts (Rombach et al. 2022)."""
    recipe = resolve(name)  # unknown names raise, listing the known ones
    check_choice("output_type", output_type, OUTPUT_TYPES)
    cond, uncond = encode_prompt(pipe, prompt, negative_prompt)
    factor, config = pipe.vae_scale_factor, pipe.unet.config
    height = config.sample_size * factor if height is None else height
    width = config.sample_size * factor if width is None else width
    for label, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < factor or value % factor:
            raise ValueError(f"{label} must be a positive multiple of the VAE's factor {factor}, got {value!r}")
    shape = (len(cond), config.in_channels, height // factor, width // factor)  # (B, 4, h, w)
    device = pipe.unet.device
    if latents is None:  # float32; diffusers draws in the pipeline's dtype, the same numbers for float32
        z = randn_like(torch.empty(shape, device=device), generator)
    elif not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape:
        raise ValueError(
            f"latents must be a tensor of shape {shape} (B, C, height / {factor}, width / {factor}), "
            f"got {getattr(latents, 'shape', type(latents).__name__)}"
        )
    else:
        z = latents.to(device=device, dtype=torch.float32)
    # The sampler's state x stays float32 whatever the U-Net's dtype (its input is cast in _network).
    sigmas, quantize, scale = grid(pipe, name, steps, schedule=schedule)
    denoiser = guided_denoiser(
        pipe,
        uncond,
        guidance_scale=guidance_scale,
        guidance_space=guidance_space,
        quantize=quantize,
        rescale=rescale,
        threshold=threshold,
        threshold_max_value=threshold_max_value,
        interval=interval,
        apg=apg,
    )
    x = SAMPLERS[recipe.sampler](
        denoiser,
        z * scale,
        sigmas.to(device),
        extra_args={"encoder_hidden_states": cond},
        callback=callback,
        noise=generator,
        progress=progress,
        **recipe.options,
    )
    return decode(pipe, x, output_type)  # x: the clean latents (B, 4, h, w)
