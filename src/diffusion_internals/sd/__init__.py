"""Stable Diffusion in practice: diffusers' pipeline, a tiny offline one, and our own loop around its parts.

    pipe = load_pipeline()                        # a real checkpoint if named or cached, else tiny_pipeline()
    use_sampler(pipe, "DPM++ 2M Karras")          # diffusers' scheduler for a UI sampler name
    image = pipe("a photo of a cat", num_inference_steps=20).images[0]
    image = generate(pipe, "a photo of a cat", name="DPM++ 2M Karras", steps=20)[0]   # our loop

Modules: :mod:`~diffusion_internals.sd.pipelines` (loading and building pipelines),
:mod:`~diffusion_internals.sd.loop` (text encoding, guided denoiser, sampler, VAE decoding),
:mod:`~diffusion_internals.sd.clip` (CLIP score from a local checkpoint) and
:mod:`~diffusion_internals.sd.bpe` (the tiny tokenizer's vocabulary, package data in ``tokenizer/``).
"""

from diffusion_internals.sd.clip import clip_score, load_clip
from diffusion_internals.sd.loop import decode, encode_prompt, generate, grid, guided_denoiser, use_sampler
from diffusion_internals.sd.pipelines import (
    check_tokenizer,
    default_device_dtype,
    has_random_weights,
    hub_snapshot,
    load_pipeline,
    sd15_architecture_pipeline,
    sd15_configs,
    tiny_pipeline,
    tiny_tokenizer,
)

__all__ = [
    "load_pipeline",
    "tiny_pipeline",
    "tiny_tokenizer",
    "sd15_configs",
    "sd15_architecture_pipeline",
    "has_random_weights",
    "check_tokenizer",
    "default_device_dtype",
    "use_sampler",
    "encode_prompt",
    "guided_denoiser",
    "grid",
    "decode",
    "generate",
    "load_clip",
    "clip_score",
    "hub_snapshot",
]
