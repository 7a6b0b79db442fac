"""Stable Diffusion pipelines: a real checkpoint when one is reachable, else a tiny offline one.

* :func:`load_pipeline` loads diffusers' ``StableDiffusionPipeline`` (Rombach et al. 2022) from a local
  folder or a Hugging Face hub id, and falls back to :func:`tiny_pipeline` when nothing is named and no
  checkpoint is cached, with a one-line warning that its images are noise.
* :func:`tiny_pipeline` is the same pipeline class built from configs with random weights in a
  fraction of a second: every mechanism (tokenizer, text encoder, U-Net, scheduler, VAE, CFG) runs,
  no weights are downloaded, the images are meaningless.
* :func:`sd15_configs` and :func:`sd15_architecture_pipeline` are Stable Diffusion 1.5's published
  architecture (U-Net 859,520,964 parameters, VAE 83,653,863, CLIP ViT-L/14 text encoder
  123,060,480) with random weights: real latency on a GPU without downloading 4 GB.

Two traps of offline loading are turned into errors (:func:`check_tokenizer`, :func:`load_pipeline`):
``CLIPTokenizer.from_pretrained`` on a folder or hub id without tokenizer files returns, without a
word, a tokenizer of 2 tokens; and ``HF_HUB_OFFLINE`` is read once, when ``huggingface_hub`` is
imported, so setting it later in a notebook changes nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from diffusion_internals.sd.bpe import TOKENIZER_DIR
from diffusion_internals.validation import check_choice

__all__ = [
    "MODEL_ENV",
    "DEFAULT_MODEL",
    "SD15_SCHEDULER",
    "TINY_NOTICE",
    "default_device_dtype",
    "tiny_tokenizer",
    "tiny_pipeline",
    "sd15_configs",
    "sd15_architecture_pipeline",
    "has_random_weights",
    "check_tokenizer",
    "hub_snapshot",
    "load_pipeline",
]

MODEL_ENV = "DIFFUSION_INTERNALS_SD_MODEL"
# Looked up in the local cache only when load_pipeline() is given nothing (never downloaded implicitly).
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
TINY_NOTICE = (
    "no Stable Diffusion checkpoint given or cached: using diffusion_internals.sd.tiny_pipeline(), random "
    f"weights, so images are noise-like and only the mechanics are real (set {MODEL_ENV} or pass a model)"
)
# Stable Diffusion 1.5's scheduler_config.json (PNDM, PLMS steps only). clip_sample is not a PNDM argument;
# diffusers keeps it in the config, so DDIMScheduler.from_config(...) gets False, as from the real file.
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def default_device_dtype(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """CUDA and float16 when a GPU is present, else CPU and float32; an explicit device or dtype wins."""
    try:
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device must be a torch device or its name ('cpu', 'cuda', 'cuda:1', ...), got {device!r}"
        ) from error
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    check_choice("dtype", dtype, DTYPES)
    return device, dtype


def tiny_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE tokenizer on the package's small vocabulary (sd.bpe), 77 tokens long."""
    return check_tokenizer(CLIPTokenizer.from_pretrained(TOKENIZER_DIR))


def _text_config(tokenizer: CLIPTokenizer, **sizes: int) -> CLIPTextConfig:
    """A CLIP text config whose embedding has one row per token and whose special ids are the tokenizer's."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )


def _assemble(
    unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer
) -> StableDiffusionPipeline:
    # eval(), as from_pretrained leaves the modules: in training mode the VAE's decoder gives other bits.
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A complete StableDiffusionPipeline with random weights, built offline in under a second (Rombach et al. 2022)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):  # the caller's global random state is left as it was
        torch.manual_seed(seed)
        # Latents (4, 8, 8) -> images (3, 64, 64): SD's layout (4 latent channels, VAE factor 8), ~0.9M parameters.
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=64,
            scaling_factor=0.18215,
        )
        text_encoder = CLIPTextModel(
            _text_config(tokenizer, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        )
    return _assemble(unet, vae, text_encoder, tokenizer)


def sd15_configs() -> dict[str, dict[str, Any]]:
    """Stable Diffusion 1.5's U-Net, VAE and text-encoder configs, as published with the checkpoint (Rombach et al.)."""
    # diffusers' UNet2DConditionModel() defaults are not SD 1.5: cross_attention_dim 1280 (872,300,484 parameters).
    unet = {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": (320, 640, 1280, 1280),
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
    }
    vae = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }
    # CLIP ViT-L/14's text tower (Radford et al. 2021): the text encoder of SD 1.x, used without its projection.
    text_encoder = {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "projection_dim": 768,
    }
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def sd15_architecture_pipeline(
    *, device: str | torch.device | None = None, dtype: torch.dtype | None = None, seed: int = 0
) -> StableDiffusionPipeline:
    """SD 1.5's U-Net and VAE with random weights, its text encoder sized to the tiny tokenizer: for latency."""
    # The weights are made on `device` directly (4.3 GB in float32 on a GPU, seconds). device="meta" makes no
    # memory at all, for counting parameters. The tokenizer is the tiny one (1,303 tokens), so the text
    # encoder's embedding has 1,303 rows, not CLIP's 49,408: 86,115,840 = 123,060,480 - 48,105 * 768
    # parameters. A lookup table's size does not change the encoder's speed.
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    meta = device is not None and str(device) == "meta"
    device, dtype = (torch.device("meta"), dtype or torch.float32) if meta else default_device_dtype(device, dtype)
    check_choice("dtype", dtype, DTYPES)
    configs = sd15_configs()
    tokenizer = tiny_tokenizer()
    from_tokenizer = ("vocab_size", "hidden_act", "max_position_embeddings")  # set by _text_config
    text = {key: value for key, value in configs["text_encoder"].items() if key not in from_tokenizer}
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), device:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text_encoder = CLIPTextModel(_text_config(tokenizer, **text))
    pipe = _assemble(unet, vae, text_encoder, tokenizer)
    return pipe if meta else pipe.to(dtype=dtype)


def has_random_weights(pipe: StableDiffusionPipeline) -> bool:
    """True for tiny_pipeline and sd15_architecture_pipeline, whose images mean nothing; False for trained weights."""
    # Both carry the package's small tokenizer (1,303 tokens); a real SD checkpoint carries CLIP's (49,408). That,
    # not a file name or where it was loaded from, says whether the weights were trained.
    return len(pipe.tokenizer) == len(tiny_tokenizer())


def check_tokenizer(tokenizer: Any, text_encoder: Any = None) -> Any:
    """Raise if a tokenizer came back empty (transformers' silent 2-token fallback) or does not fit the text encoder."""
    size = len(tokenizer)
    if size < 260:  # a byte-level BPE has at least its 256 byte tokens
        raise ValueError(
            f"the tokenizer has only {size} tokens: its files (vocab.json, merges.txt) were not found, "
            f"and transformers' CLIPTokenizer then returns an empty tokenizer without an error. Check "
            f"the checkpoint's tokenizer/ folder, or download the checkpoint again"
        )
    rows = None if text_encoder is None else text_encoder.get_input_embeddings().num_embeddings
    if rows is not None and rows != size:
        raise ValueError(
            f"the tokenizer has {size} tokens but the text encoder's embedding has {rows} rows: they "
            f"come from different checkpoints"
        )
    return tokenizer


def _is_true(value: str | None) -> bool:
    return value is not None and value.upper() in {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading


def _endpoint_reachable(timeout: float = 5.0) -> str | None:
    """None if a TCP connection to the hub (or its HTTPS proxy) opens within timeout, else why not."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(urllib.request.getproxies().get("https") or constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"cannot connect to {host}:{port} ({error})")

    # In a thread: the name lookup has no timeout of its own, and a machine without DNS may wait on it.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer from {host}:{port} within {timeout:g} s"


def hub_snapshot(repo_id: str, filename: str = "model_index.json") -> Path | None:
    """The cached snapshot folder of a hub repo (main) holding filename, found without a network call; else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found).parent if isinstance(found, str) else None


def load_pipeline(
    model: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from a folder, a hub id or $DIFFUSION_INTERNALS_SD_MODEL; else the tiny one, warned."""
    import huggingface_hub

    device, dtype = default_device_dtype(device, dtype)
    if model is None:
        model = os.environ.get(MODEL_ENV) or None
    if model is None:
        snapshot = hub_snapshot(DEFAULT_MODEL)  # the local cache only: nothing is downloaded unasked
        if snapshot is None:
            warnings.warn(TINY_NOTICE, stacklevel=2)
            return tiny_pipeline().to(device=device, dtype=dtype)
        model = snapshot
    if not isinstance(model, (str, os.PathLike)) or not str(model):
        raise ValueError(f"model must be a local folder or a hub id ('org/name'), got {model!r}")
    folder = Path(model).expanduser()
    if not folder.is_dir():
        repo_id = str(model)
        if repo_id.startswith((".", "/", "~")) or repo_id.count("/") != 1:
            raise ValueError(f"model={repo_id!r} is neither an existing folder nor a hub id of the form 'org/name'")
        if _is_true(os.environ.get("HF_HUB_OFFLINE")) and not huggingface_hub.is_offline_mode():
            raise RuntimeError(
                "HF_HUB_OFFLINE is set in the environment but huggingface_hub was imported before it "
                "was set, so it would still go online (and retry for minutes): set HF_HUB_OFFLINE=1 "
                "before Python starts (or restart the kernel), or pass a local folder"
            )
        folder = hub_snapshot(repo_id)
        if folder is None and huggingface_hub.is_offline_mode():
            raise FileNotFoundError(
                f"{repo_id!r} is not in the local Hugging Face cache "
                f"({huggingface_hub.constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: download "
                f"it first on a machine with network (hf download {repo_id}), or pass a local "
                f"folder"
            )
        if folder is None:  # fail in seconds rather than after minutes of retries
            why = _endpoint_reachable()
            if why is not None:
                raise ConnectionError(
                    f"{repo_id!r} is not cached and the hub is unreachable: {why}. Set "
                    f"HF_HUB_OFFLINE=1 and pass a local folder, or connect to the network"
                )
    # A hub id not yet cached is downloaded here (only the files the pipeline needs); all else is local.
    source, local = (repo_id, False) if folder is None else (folder, True)
    with warnings.catch_warnings():  # newer diffusers call torch_dtype dtype; older ones know only torch_dtype
        warnings.filterwarnings("ignore", message="`torch_dtype` is deprecated", category=FutureWarning)
        pipe = StableDiffusionPipeline.from_pretrained(source, torch_dtype=dtype, local_files_only=local)
    check_tokenizer(pipe.tokenizer, pipe.text_encoder)
    return pipe.to(device)
