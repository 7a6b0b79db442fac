"""CLIP score of images against their prompts, from a local CLIP checkpoint only (Hessel et al. 2021).

CLIP score = 100 * max(cos(E_image, E_text), 0), with CLIP's projected image and text embeddings
(Radford et al. 2021); torchmetrics and most papers on text-to-image models use this scale (Hessel et
al.'s CLIP-S weights the cosine by 2.5 instead). Higher is better; it measures agreement with the
prompt, not image quality. The checkpoint comes from ``load_clip``: a folder, ``$DIFFUSION_INTERNALS_CLIP_MODEL``
or the local Hugging Face cache of ``openai/clip-vit-large-patch14``, never a download. Without one
there is no score: callers report "n/a (no checkpoint)", never a number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffusion_internals.sd.pipelines import check_tokenizer, hub_snapshot

__all__ = ["CLIP_ENV", "DEFAULT_CLIP", "NO_CHECKPOINT", "load_clip", "clip_score"]

CLIP_ENV = "DIFFUSION_INTERNALS_CLIP_MODEL"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # the text tower of SD 1.x's encoder, with its image tower
NO_CHECKPOINT = "n/a (no checkpoint)"


def load_clip(model: str | os.PathLike | None = None) -> tuple[Any, Any] | None:
    """(CLIPModel, CLIPProcessor) from a local folder, $DIFFUSION_INTERNALS_CLIP_MODEL or the cache; else None."""
    from transformers import CLIPModel, CLIPProcessor

    named = model if model is not None else os.environ.get(CLIP_ENV) or None
    name = str(named if named is not None else DEFAULT_CLIP)
    folder = Path(name).expanduser() if Path(name).expanduser().is_dir() else hub_snapshot(name, "config.json")
    if folder is None:
        if named is not None:  # asked for by name: say so, rather than a quiet "n/a"
            raise FileNotFoundError(
                f"CLIP model {name!r} is neither a local folder nor in the local Hugging Face cache"
            )
        return None
    clip = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
    check_tokenizer(processor.tokenizer, clip.text_model)
    return clip, processor


def _features(output: Any) -> torch.Tensor:
    """Projected features from get_*_features: a tensor (transformers 4) or an output's pooler_output (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_score(images: torch.Tensor | Sequence[Any], prompts: Sequence[str], clip: tuple[Any, Any]) -> torch.Tensor:
    """Per image, 100 * max(cos(image embedding, prompt embedding), 0) (Hessel et al. 2021, eq. 1 with w = 100)."""
    model, processor = clip
    if isinstance(images, torch.Tensor):  # (B, 3, H, W) in [0, 1], as pipe(..., output_type="pt")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be (B, 3, H, W) in [0, 1] or a list of PIL images, got shape {tuple(images.shape)}"
            )
        images = list((images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    else:
        images = [np.asarray(image) for image in images]  # (H, W, 3) uint8 each
    if isinstance(prompts, str) or len(prompts) != len(images):
        raise ValueError(f"prompts must be a list of one prompt per image ({len(images)}), got {prompts!r}")
    device = model.device
    text = processor.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt").to(device)
    pixels = processor.image_processor(images=images, return_tensors="pt").pixel_values.to(device, model.dtype)
    image_features = _features(model.get_image_features(pixel_values=pixels))  # (B, D)
    text_features = _features(model.get_text_features(**text))  # (B, D)
    cosine = torch.nn.functional.cosine_similarity(image_features.float(), text_features.float(), dim=-1)  # (B,)
    return 100 * cosine.clamp_min(0)
