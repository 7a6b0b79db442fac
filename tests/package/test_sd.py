"""Stable Diffusion in practice (diffusion_internals.sd): pipelines, offline loading, our loop against diffusers'.

Oracles: diffusers' own StableDiffusionPipeline call and encode_prompt, and its rescale_noise_cfg;
OpenAI's CLIP BPE algorithm (a reference encoder below, after CLIP's simple_tokenizer.py) against
transformers' Rust-backed CLIPTokenizer on known strings; the published parameter counts of SD 1.5
(U-Net 859,520,964, VAE 83,653,863, CLIP ViT-L/14 text encoder 123,060,480); CLIPModel's own logits.

Parity tolerances (our loop against pipe(...), same initial latents and noise, 12 steps, CFG 7.5,
float32 on the CPU). Both sides run the same U-Net calls on the same inputs; what differs is the
arithmetic between them (our float64 coefficients and x0 form against diffusers' float32 VP form), so
the latents agree to float32 round-off, amplified by the random U-Net and guidance (uncond + 7.5 (cond -
uncond) multiplies a rounding in eps by up to 7.5): observed 0.5-3e-6 of max |latent| (about 40-60).
LATENT_RTOL = 2e-5 leaves ~7x room and is 50-600x below the smallest real difference measured here
(DDIM's final alpha, 1e-3; rescale on x0 instead of eps, 1.2e-2). Images go through the VAE decoder and
diffusers' postprocessing ([0, 1]): observed <= 2e-6, IMAGE_ATOL = 1e-5 (a uint8 level is 3.9e-3).
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
import regex
import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from transformers import CLIPTextConfig, CLIPTextModel

from diffusion_internals import sd
from diffusion_internals.guidance import APG
from diffusion_internals.sd import bpe, pipelines

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a photo of a cat", "an oil painting of a horse on a hill"]
LATENT_RTOL = 2e-5  # of max |latent|; see the module docstring
IMAGE_ATOL = 1e-5
SD15_UNET, SD15_VAE, SD15_TEXT = 859_520_964, 83_653_863, 123_060_480  # published SD 1.5 parameter counts

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def pipe():
    return sd.tiny_pipeline()


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """A hub cache with nothing in it, no checkpoint named, and the hub's offline switch off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", pipelines.MODEL_ENV, "DIFFUSION_INTERNALS_CLIP_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return constants


# ----------------------------------------------------------------------------- tokenizer


def reference_clip_bpe(text: str, vocab: dict[str, int], merges: list[tuple[str, str]]) -> list[int]:
    """OpenAI CLIP's simple_tokenizer.encode (Radford et al. 2021), with <|startoftext|> and <|endoftext|>."""
    ranks = {pair: i for i, pair in enumerate(merges)}
    byte_chars = bpe.bytes_to_unicode()
    pattern = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
        r"""[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )
    ids = [vocab["<|startoftext|>"]]
    for piece in regex.findall(pattern, " ".join(text.split()).lower()):
        token = "".join(byte_chars[b] for b in piece.encode("utf-8"))
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:  # simple_tokenizer.bpe: merge the best-ranked pair everywhere, until none is left
            first, second = min(zip(word, word[1:]), key=lambda pair: ranks.get(pair, math.inf))
            if (first, second) not in ranks:
                break
            new_word, i = [], 0
            while i < len(word):
                if first not in word[i:]:
                    new_word.extend(word[i:])
                    break
                j = word.index(first, i)
                new_word.extend(word[i:j])
                if j < len(word) - 1 and word[j + 1] == second:
                    new_word.append(first + second)
                    i = j + 2
                else:
                    new_word.append(word[j])
                    i = j + 1
            word = tuple(new_word)
        ids += [vocab[t] for t in word]
    return ids + [vocab["<|endoftext|>"]]


def shipped_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = json.loads((bpe.TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    lines = (bpe.TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    return vocab, [tuple(line.split()) for line in lines[1:]]


def test_tiny_tokenizer_encodes_like_clips_reference_bpe():
    tokenizer = sd.tiny_tokenizer()
    vocab, merges = shipped_vocab()
    assert len(tokenizer) == len(vocab) == 512 + len(merges) + 2 and 300 <= len(merges) <= 1000
    assert tokenizer.model_max_length == 77
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|startoftext|>",
        "<|endoftext|>",
        "<|endoftext|>",
    )
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (len(vocab) - 2, len(vocab) - 1)
    # Known strings: learned words are single tokens, anything else falls back to pieces and bytes.
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("A photo of a CAT").input_ids)
    assert tokens == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>"]
    for text in [
        "a photo of a cat",
        "An astronaut riding a horse on Mars!",
        "hello   world 2024",
        "it's a dog's life, isn't it?",
        "café crème brûlée",
        "zzyzx qwerty",
    ]:
        ids = tokenizer(text).input_ids
        assert ids == reference_clip_bpe(text, vocab, merges), text
        assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "".join(text.lower().split())
    padded = tokenizer(["a cat", ""], padding="max_length", max_length=77, truncation=True).input_ids
    assert [len(p) for p in padded] == [77, 77] and padded[1][1:] == [tokenizer.eos_token_id] * 76


def test_vocab_files_are_clip_format_and_what_bpe_writes(tmp_path):
    vocab, merges = shipped_vocab()
    ordered = sorted(vocab, key=vocab.get)
    byte_chars = list(bpe.bytes_to_unicode().values())
    assert bpe.bytes_to_unicode()[ord(" ")] == "Ġ" and bpe.bytes_to_unicode()[ord("\n")] == "Ċ"  # GPT-2's table
    assert ordered[:256] == byte_chars and ordered[256:512] == [c + "</w>" for c in byte_chars]
    assert ordered[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    assert ordered[512:-2] == [left + right for left, right in merges]
    for i, (left, right) in enumerate(merges):  # each merge joins tokens that exist before it
        assert vocab[left] < 512 + i and vocab[right] < 512 + i
    bpe.write(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (bpe.TOKENIZER_DIR / name).read_bytes(), name
    with pytest.raises(ValueError, match="num_merges must be an int >= 0"):
        bpe.learn_merges(["cat"], -1)


# ----------------------------------------------------------------------------- pipelines


def test_tiny_pipeline_is_a_complete_stable_diffusion_pipeline(pipe):
    assert isinstance(pipe, StableDiffusionPipeline) and pipe.safety_checker is None
    assert isinstance(pipe.scheduler, PNDMScheduler) and pipe.scheduler.config.skip_prk_steps
    assert pipe.scheduler.config.clip_sample is False and pipe.scheduler.config.set_alpha_to_one is False
    assert pipe.text_encoder.config.hidden_size == pipe.unet.config.cross_attention_dim
    assert pipe.vae_scale_factor == 8 and pipe.vae.config.scaling_factor == 0.18215
    start = time.perf_counter()
    out = pipe(
        PROMPTS, num_inference_steps=10, guidance_scale=7.5, guidance_rescale=0.7, generator=gen(0), output_type="pt"
    ).images
    assert out.shape == (2, 3, 64, 64) and bool(torch.isfinite(out).all())
    assert time.perf_counter() - start < 20  # seconds, on one slow core (observed 0.1 s)
    again = sd.tiny_pipeline()
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), again.unet.parameters()))  # seeded
    assert not torch.equal(next(iter(sd.tiny_pipeline(seed=1).unet.parameters())), next(iter(pipe.unet.parameters())))
    with pytest.raises(ValueError, match="seed must be an int"):
        sd.tiny_pipeline(seed="0")


@pytest.mark.slow
def test_tiny_pipeline_round_trips_through_save_pretrained_offline(pipe, tmp_path):
    # A fresh Python with HF_HUB_OFFLINE=1 set before any import: load_pipeline(folder) gives the same
    # images; a hub id that is not cached fails at once with a message, instead of retrying for minutes.
    pipe.save_pretrained(tmp_path / "tiny")
    expected = pipe(
        PROMPTS, num_inference_steps=8, guidance_scale=5.0, guidance_rescale=0.5, generator=gen(3), output_type="pt"
    ).images
    script = f"""
import time, torch, huggingface_hub
from diffusion_internals import sd
torch.set_num_threads(1)  # as this module: the same reduction order, so the same bits
assert huggingface_hub.is_offline_mode()
pipe = sd.load_pipeline({str(tmp_path / "tiny")!r})
images = pipe({PROMPTS!r}, num_inference_steps=8, guidance_scale=5.0, guidance_rescale=0.5,
              generator=torch.Generator().manual_seed(3), output_type="pt").images
torch.save(images, {str(tmp_path / "images.pt")!r})
start = time.perf_counter()
try:
    sd.load_pipeline("fake-org/fake-model")
except FileNotFoundError as error:
    print("FAST", time.perf_counter() - start, error)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop(pipelines.MODEL_ENV, None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "images.pt"), expected, rtol=0, atol=0)
    fast = [line for line in done.stdout.splitlines() if line.startswith("FAST")]
    assert fast and float(fast[0].split()[1]) < 5 and "not in the local Hugging Face cache" in fast[0]


def test_load_pipeline_with_nothing_reachable_is_the_tiny_pipeline_with_one_warning(empty_hub):
    with pytest.warns(UserWarning) as caught:
        pipe = sd.load_pipeline()
    notices = [str(w.message) for w in caught if "noise-like" in str(w.message)]
    assert len(notices) == 1 and "\n" not in notices[0] and pipelines.MODEL_ENV in notices[0]
    assert isinstance(pipe, StableDiffusionPipeline) and len(pipe.tokenizer) == len(sd.tiny_tokenizer())
    assert pipe.device.type == "cpu" and pipe.unet.dtype == torch.float32  # no GPU on this machine


def test_load_pipeline_reads_the_environment_variable(empty_hub, monkeypatch, pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    monkeypatch.setenv(pipelines.MODEL_ENV, str(tmp_path / "model"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback notice
        loaded = sd.load_pipeline()
    assert all(torch.equal(a, b) for a, b in zip(loaded.unet.parameters(), pipe.unet.parameters()))


def test_offline_set_after_import_is_an_error(empty_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # huggingface_hub read it at import: still online
    with pytest.raises(RuntimeError, match="imported before it was set"):
        sd.load_pipeline("fake-org/fake-model")


def test_offline_uncached_hub_id_is_a_clear_error(empty_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(empty_hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE is set"):
        sd.load_pipeline("fake-org/fake-model")


def test_uncached_hub_id_fails_fast_when_the_hub_is_unreachable(empty_hub, monkeypatch):
    # HF_HUB_OFFLINE unset and nothing cached: without a reachable hub, an error in seconds. The "hub" is
    # a closed port on this machine (no traffic leaves it).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(empty_hub, "ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="not cached and the hub is unreachable"):
        sd.load_pipeline("fake-org/fake-model")
    assert time.perf_counter() - start < 6


def test_missing_tokenizer_files_are_an_error_not_a_two_token_tokenizer(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (tmp_path / "tokenizer" / name).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="only 2 tokens"):
        sd.load_pipeline(tmp_path)

    class CLIPSizedEncoder:
        def get_input_embeddings(self):
            return torch.nn.Embedding(49408, 1)

    with pytest.raises(ValueError, match="1303 tokens but the text encoder's embedding has 49408 rows"):
        sd.check_tokenizer(pipe.tokenizer, CLIPSizedEncoder())


def test_load_pipeline_refuses_bad_arguments(empty_hub, tmp_path):
    with pytest.raises(ValueError, match="model must be a local folder or a hub id"):
        sd.load_pipeline(123)
    with pytest.raises(ValueError, match="neither an existing folder nor a hub id"):
        sd.load_pipeline(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(ValueError, match="dtype must be one of"):
        sd.load_pipeline(dtype=torch.int8)
    with pytest.raises(ValueError, match="device must be a torch device"):
        sd.load_pipeline(device="gpu0")


def test_default_device_and_dtype(monkeypatch):
    assert sd.default_device_dtype() == (torch.device("cpu"), torch.float32)
    assert sd.default_device_dtype("cpu", torch.bfloat16) == (torch.device("cpu"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sd.default_device_dtype() == (torch.device("cuda"), torch.float16)
    assert sd.default_device_dtype("cpu") == (torch.device("cpu"), torch.float32)


def test_random_weights_are_told_from_a_checkpoint_by_the_tokenizer(pipe):
    # Both random-weight pipelines carry the package's tokenizer; a trained SD 1.x checkpoint carries CLIP
    # ViT-L/14's, whose vocabulary has 49,408 tokens (Radford et al. 2021).
    assert sd.has_random_weights(pipe)
    assert sd.has_random_weights(sd.sd15_architecture_pipeline(device="meta"))
    checkpoint = types.SimpleNamespace(tokenizer=[None] * 49408)
    assert not sd.has_random_weights(checkpoint)


def test_sd15_architecture_has_the_published_parameter_counts():
    # Built on the meta device: shapes only, no memory, a fraction of a second.
    configs = sd.sd15_configs()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
        default_unet = UNet2DConditionModel()
    assert (count(unet), count(vae), count(text)) == (SD15_UNET, SD15_VAE, SD15_TEXT)
    assert default_unet.config.cross_attention_dim == 1280 and count(default_unet) == 872_300_484  # not SD 1.5
    pipe = sd.sd15_architecture_pipeline(device="meta")
    assert (count(pipe.unet), count(pipe.vae)) == (SD15_UNET, SD15_VAE)
    # The text encoder's embedding has one row per token of the tiny tokenizer instead of CLIP's 49,408.
    rows = len(pipe.tokenizer)
    assert count(pipe.text_encoder) == SD15_TEXT - (49408 - rows) * 768 == 86_115_840
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 512
    assert pipe.text_encoder.config.hidden_size == pipe.unet.config.cross_attention_dim == 768


# ----------------------------------------------------------------------------- schedulers


def test_use_sampler_builds_diffusers_scheduler_for_the_name(pipe):
    # diffusers' scheduler overview: UI name -> class and options.
    expected = {
        "DDIM": ("DDIMScheduler", {}),
        "Euler": ("EulerDiscreteScheduler", {}),
        "Euler a": ("EulerAncestralDiscreteScheduler", {}),
        "DPM++ 2M Karras": (
            "DPMSolverMultistepScheduler",
            {"use_karras_sigmas": True, "solver_order": 2, "algorithm_type": "dpmsolver++"},
        ),
        "UniPC": ("UniPCMultistepScheduler", {"solver_type": "bh2"}),
    }
    for name, (cls, options) in expected.items():
        assert sd.use_sampler(pipe, name) is pipe
        assert type(pipe.scheduler).__name__ == cls
        assert {key: pipe.scheduler.config[key] for key in options} == options
        assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.steps_offset == 1
    sd.use_sampler(pipe, "DDIM")  # after Euler-type schedulers, which do not take clip_sample
    assert pipe.scheduler.config.clip_sample is False
    with pytest.raises(ValueError, match="name must be one of.*'DPM\\+\\+ 2M Karras'"):
        sd.use_sampler(pipe, "DPM++ 2M Karras Turbo")
    with pytest.raises(ValueError, match="diffusers has no scheduler equivalent"):
        sd.use_sampler(pipe, "DPM++ 3M SDE")
    pipe.scheduler = PNDMScheduler()  # a config without clip_sample: DDIM would clamp x0_hat to [-1, 1]
    with pytest.warns(UserWarning, match="clip_sample=True"):
        sd.use_sampler(pipe, "DDIM")


# Pairs whose second swap used to inherit keys of the first: DDPM's variance_type="fixed_small" in DPM-Solver,
# DPM-Solver's algorithm_type and use_karras_sigmas in DDPM's and Euler's configs, Euler's grid keys in Euler a's.
@pytest.mark.parametrize(
    "names",
    [
        ("DDPM", "DPM++ 2M"),
        ("DPM++ 2M SDE Karras", "DDPM"),
        ("DPM++ 2M Karras", "Euler"),
        ("Euler", "Euler a"),
        ("UniPC", "DDIM"),
        ("DDIM", "Euler", "DPM++ 2M Karras", "UniPC"),
    ],
)
def test_use_sampler_depends_only_on_the_original_config_and_the_name(pipe, names):
    own = pipe.scheduler  # SD 1.5's PNDM config
    original = dict(own.config)
    direct = sd.use_sampler(pipe, names[-1]).scheduler
    pipe.scheduler = own
    for name in names:
        sd.use_sampler(pipe, name)
    chained = pipe.scheduler
    assert type(chained) is type(direct)
    assert dict(chained.config) == dict(direct.config)  # every key, the grid switches and the leftovers alike
    assert chained.config[sd.loop.ORIGINAL_CONFIG] == original == dict(own.config)  # kept, and left as it was
    # A scheduler installed by hand, not by use_sampler, is the original of the next swap.
    pipe.scheduler = DDIMScheduler.from_config(original, timestep_spacing="trailing")
    assert sd.use_sampler(pipe, "Euler").scheduler.config.timestep_spacing == "trailing"


# ----------------------------------------------------------------------------- our loop against pipe(...)


def test_encode_prompt_is_diffusers_encode_prompt(pipe):
    cond, uncond = sd.encode_prompt(pipe, PROMPTS, negative_prompt="blurry")
    theirs_cond, theirs_uncond = pipe.encode_prompt(PROMPTS, "cpu", 1, True, negative_prompt=["blurry"] * 2)
    assert cond.shape == (2, 77, 32)
    torch.testing.assert_close(cond, theirs_cond, rtol=0, atol=0)
    torch.testing.assert_close(uncond, theirs_uncond, rtol=0, atol=0)
    _, empty = sd.encode_prompt(pipe, PROMPTS)
    torch.testing.assert_close(empty, pipe.encode_prompt(PROMPTS, "cpu", 1, True)[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="negative_prompt must be one string or one per prompt"):
        sd.encode_prompt(pipe, PROMPTS, ["a", "b", "c"])
    with pytest.raises(ValueError, match="prompt must be a string or a non-empty list"):
        sd.encode_prompt(pipe, [])


def pair(pipe, name: str, *, rescale: float = 0.0, space: str = "x0", seed: int = 0, **kwargs):
    """(ours, diffusers') latents and images from the same generator seed: 12 steps, CFG 7.5."""
    sd.use_sampler(pipe, name)
    if name == "DDIM":  # end at sigma = 0 (alpha_bar = 1); SD's own False is tested separately below
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True)
    common = {"num_inference_steps": 12, "guidance_scale": 7.5, "guidance_rescale": rescale}
    theirs = {
        kind: pipe(PROMPTS, **common, generator=gen(seed), output_type=kind, **kwargs).images
        for kind in ("latent", "pt")
    }
    latents = sd.generate(
        pipe,
        PROMPTS,
        name=name,
        steps=12,
        guidance_scale=7.5,
        rescale=rescale,
        guidance_space=space,
        generator=gen(seed),
        output_type="latent",
        **kwargs,
    )
    return {"latent": latents, "pt": sd.decode(pipe, latents, "pt")}, theirs


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return (ours - theirs).abs().max().item() / theirs.abs().max().item()


@pytest.mark.parametrize("name", ["DDIM", "Euler", "Euler a", "DPM++ 2M Karras", "UniPC"])
@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_generate_gives_the_same_image_as_pipe(pipe, name, rescale):
    # Without rescale, guidance on x0_hat (the default) equals diffusers' on eps; with it, the rescale must
    # act on eps to be diffusers' (guidance_space="model_output"). Euler a shares its noise: both sides
    # draw the initial latents and then one tensor per step from the same generator, in the same order.
    ours, theirs = pair(pipe, name, rescale=rescale, space="model_output" if rescale else "x0")
    observed = relative_error(ours["latent"], theirs["latent"])
    assert observed <= LATENT_RTOL, f"{name}: max |ours - diffusers| = {observed:.2g} x max|latent|"
    torch.testing.assert_close(ours["pt"], theirs["pt"], rtol=0, atol=IMAGE_ATOL)


@pytest.mark.parametrize("name", ["Euler", "DPM++ 2M"])
def test_generate_follows_the_pipelines_timestep_spacing(pipe, name):
    # "trailing" instead of SD's "leading": the grid changes, and diffusers' Euler then starts from
    # z * sigma_max instead of z * sqrt(1 + sigma_max^2) (init_noise_sigma); generate follows both.
    sd.use_sampler(pipe, name)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing="trailing")
    theirs = pipe(PROMPTS, num_inference_steps=12, generator=gen(0), output_type="latent").images
    ours = sd.generate(pipe, PROMPTS, name=name, steps=12, generator=gen(0), output_type="latent")
    assert relative_error(ours, theirs) <= LATENT_RTOL


def test_rescale_on_x0_is_not_diffusers_rescale_on_eps(pipe):
    # One guided call at a fixed (x, sigma): diffusers rescales eps (rescale_noise_cfg), CFGDenoiser's default
    # rescales x0_hat. model_output space reproduces diffusers' formula; x0 space differs, by a few percent.
    cond, uncond = sd.encode_prompt(pipe, PROMPTS)
    t, alpha_bar = 600, pipe.scheduler.alphas_cumprod[600].double().item()
    sigma = math.sqrt((1 - alpha_bar) / alpha_bar)
    x = torch.randn(2, 4, 8, 8, generator=gen(1)) * math.sqrt(1 + sigma**2)  # (B, 4, h, w) at noise level sigma
    x_t = x / math.sqrt(1 + sigma**2)
    eps_uncond, eps_cond = pipe.unet(
        torch.cat([x_t, x_t]), torch.tensor(t), encoder_hidden_states=torch.cat([uncond, cond])
    ).sample.chunk(2)
    eps = rescale_noise_cfg(eps_uncond + 7.5 * (eps_cond - eps_uncond), eps_cond, guidance_rescale=0.7)
    expected = x - sigma * eps  # x0_hat of diffusers' guided, rescaled eps
    results = {}
    for space in ("model_output", "x0"):
        denoiser = sd.guided_denoiser(pipe, uncond, guidance_scale=7.5, guidance_space=space, rescale=0.7)
        results[space] = relative_error(denoiser(x, torch.full((2,), sigma), encoder_hidden_states=cond), expected)
    assert results["model_output"] < 1e-5 and results["x0"] > 1e-3, results  # observed 1.7e-6 and 2.4e-2


def test_ddim_with_sds_final_alpha_stops_at_sigma_of_t0(pipe):
    # SD's scheduler config has set_alpha_to_one=False: diffusers' DDIM (as the original LDM code) takes its
    # last step to alpha_bar_0 = 0.99915, sigma = 0.029, not to 0, and returns that noisy latent. Our DDIM
    # ends at sigma = 0. From our last step, sqrt(alpha_bar_0) (x0_hat + sigma_0 eps_hat) is diffusers' result.
    sd.use_sampler(pipe, "DDIM")
    assert pipe.scheduler.config.set_alpha_to_one is False
    theirs = pipe(PROMPTS, num_inference_steps=12, guidance_scale=7.5, generator=gen(0), output_type="latent").images
    seen = {}
    ours = sd.generate(
        pipe,
        PROMPTS,
        name="DDIM",
        steps=12,
        guidance_scale=7.5,
        generator=gen(0),
        output_type="latent",
        callback=lambda **kw: seen.__setitem__(kw["i"], kw),
    )
    last = seen[11]
    x_before, x0_hat, sigma = seen[10]["x"], last["denoised"], float(last["sigma"])
    eps_hat = (x_before - x0_hat) / sigma
    alpha_bar_0 = pipe.scheduler.alphas_cumprod[0].double().item()
    reconstructed = math.sqrt(alpha_bar_0) * x0_hat + math.sqrt(1 - alpha_bar_0) * eps_hat
    assert relative_error(reconstructed, theirs) <= LATENT_RTOL
    assert relative_error(ours, theirs) > 1e-4  # the difference is real, not round-off


def test_generate_in_float16_matches_pipe(pipe):
    # The GPU's dtype on the CPU: diffusers keeps fp16 latents between steps, we keep float32, so the images
    # differ by fp16 rounding (unit roundoff 2^-11 = 4.9e-4) through 12 steps: observed max 4e-3, mean 3e-4.
    pipe = pipe.to(dtype=torch.float16)
    sd.use_sampler(pipe, "DPM++ 2M Karras")
    z = torch.randn(2, 4, 8, 8, generator=gen(0)).half()
    theirs = pipe(PROMPTS, num_inference_steps=12, guidance_scale=7.5, latents=z, output_type="pt").images
    ours = sd.generate(pipe, PROMPTS, name="DPM++ 2M Karras", steps=12, latents=z, output_type="pt")
    assert ours.dtype == theirs.dtype == torch.float16
    difference = (ours.float() - theirs.float()).abs()
    assert difference.max().item() <= 2e-2 and difference.mean().item() <= 2e-3


def test_guidance_fixes_in_our_loop(pipe):
    sd.use_sampler(pipe, "Euler")

    def run(**kwargs):
        return sd.generate(pipe, PROMPTS, name="Euler", steps=8, generator=gen(0), output_type="latent", **kwargs)

    # An interval that holds no sigma of the grid turns guidance off: the conditional model, as guidance_scale 1
    # (one U-Net pass of batch B against a pass of 2B: round-off apart), and as diffusers at guidance_scale 1.
    plain = run()
    one = pipe(PROMPTS, num_inference_steps=8, guidance_scale=1.0, generator=gen(0), output_type="latent").images
    assert relative_error(run(interval=(1e3, 2e3)), one) <= LATENT_RTOL
    assert relative_error(run(guidance_scale=1.0), one) <= LATENT_RTOL
    assert relative_error(plain, one) > 1e-2  # guidance 7.5 is not guidance 1
    # Below 1 diffusers turns guidance off (the conditional model), CFGDenoiser interpolates towards uncond.
    half = pipe(PROMPTS, num_inference_steps=8, guidance_scale=0.5, generator=gen(0), output_type="latent").images
    torch.testing.assert_close(half, one, rtol=0, atol=0)
    assert relative_error(run(guidance_scale=0.5), one) > 1e-3
    for fixes in (
        {"threshold": 0.995, "threshold_max_value": 4.0},
        {"apg": APG(eta=0.0, momentum=-0.5)},
        {"interval": (0.5, 5.0)},
        {"rescale": 0.7},
    ):
        changed = run(**fixes)
        assert bool(torch.isfinite(changed).all()) and relative_error(changed, plain) > 1e-3, fixes
    # Our own grids instead of diffusers': any schedule of sampling.SCHEDULES.
    assert relative_error(run(schedule="karras"), plain) > 1e-3


def test_generate_refuses_bad_arguments(pipe):
    def call(**kwargs):
        return sd.generate(pipe, "a cat", **{"steps": 2, "output_type": "latent", **kwargs})

    with pytest.raises(ValueError, match=r"name must be one of \[.*'Euler a'.*\], got 'Euler b'"):
        call(name="Euler b")
    with pytest.raises(ValueError, match="name must be one of"):
        call(name="euler")  # a key of sampling.SAMPLERS is not a UI name
    with pytest.raises(TypeError, match="sampler"):
        call(sampler="euler")  # sampler= means a key of sampling.SAMPLERS; generate takes a UI name
    with pytest.raises(ValueError, match="guidance_space must be one of"):
        call(guidance_space="eps")
    with pytest.raises(ValueError, match=r"model_output.*\['threshold'\]"):
        call(guidance_space="model_output", threshold=0.99)
    with pytest.raises(ValueError, match=r"latents must be a tensor of shape \(1, 4, 8, 8\)"):
        call(latents=torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="height must be a positive multiple of the VAE's factor 8"):
        call(height=60)
    with pytest.raises(ValueError, match="output_type must be one of"):
        call(output_type="jpeg")
    with pytest.raises(ValueError, match="guidance_scale must satisfy value >= 0"):
        call(guidance_scale=-1.0)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        call(steps=0)


# ----------------------------------------------------------------------------- CLIP score


def test_clip_score_is_clips_own_logit_at_scale_100(empty_hub, tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = sd.tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = CLIPConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "image_size": 32,
                "patch_size": 8,
            },
            projection_dim=16,
            logit_scale_init_value=math.log(100),
        )
        model = CLIPModel(config).eval()
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    ).save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    clip = sd.load_clip(tmp_path)
    images = torch.rand(3, 3, 64, 64, generator=gen(0))
    prompts = ["a photo of a cat", "a red car", "a dog"]
    score = sd.clip_score(images, prompts, clip)
    _, processor = clip
    inputs = processor(
        text=prompts,
        images=list((images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()),
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        logits = clip[0](**inputs).logits_per_image.diagonal()  # exp(log 100) * cos, CLIP's forward
    torch.testing.assert_close(score, logits.clamp_min(0), rtol=1e-4, atol=1e-4)
    assert sd.load_clip() is None  # nothing cached, nothing named: no score, never a made-up one
    with pytest.raises(FileNotFoundError, match="neither a local folder nor in the local Hugging Face cache"):
        sd.load_clip("fake-org/fake-clip")


# ----------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_latency_benchmark_quick_run_on_the_cpu(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    for name in (pipelines.MODEL_ENV, "DIFFUSION_INTERNALS_CLIP_MODEL"):
        env.pop(name, None)
    out = tmp_path / "latency.csv"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sd_latency.py"), "--quick", "--device", "cpu", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mechanics/overhead, not SD" in done.stdout and "n/a (no checkpoint)" in done.stdout
    rows = list(csv.DictReader(out.open()))
    assert [(r["sampler"], r["steps"], r["batch"]) for r in rows] == [
        ("DDIM", "10", "1"),
        ("DDIM", "20", "1"),
        ("DPM++ 2M Karras", "10", "1"),
        ("DPM++ 2M Karras", "20", "1"),
    ]
    assert all(
        r["device"] == "cpu"
        and float(r["s_per_image"]) > 0
        and r["clip_score"] == "n/a (no checkpoint)"
        and float(r["s_per_step"]) == pytest.approx(float(r["s_per_image"]) / int(r["steps"]), rel=1e-3)
        for r in rows
    )


# ----------------------------------------------------------------------------- grading on a GPU


def test_autograde_gpu_target_sets_what_the_grader_reads(monkeypatch):
    # make -n prints the recipe without running it; the grader's own limits_from_env, run with that
    # environment and the --gpu flag the recipe passes, is the oracle.
    from diffusion_internals.course.grading.preprocessors import limits_from_env

    done = subprocess.run(
        ["make", "-n", "autograde-gpu", "GPU_DEVICES=3", "GPU_CELL_TIMEOUT=1234"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    recipe = done.stdout.replace("\\\n", " ")
    grading = [line for line in recipe.splitlines() if "scripts/autograde.py" in line]
    check = [line for line in recipe.splitlines() if "torch.cuda.is_available()" in line]
    assert len(grading) == 1 and len(check) == 1 and recipe.index(check[0]) < recipe.index(grading[0])
    words = grading[0].split()
    env = dict(word.split("=", 1) for word in words if "=" in word and word.split("=")[0].isupper())
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and "CUDA_VISIBLE_DEVICES=3" in check[0]
    assert "--gpu" in words, "autograde-gpu must ask the grader to bind the GPU into the sandbox"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    limits = limits_from_env(gpu="--gpu" in words)
    assert limits.cell_timeout == 1234 and limits.gpu


# ----------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@needs_cuda
def test_gpu_pipeline_in_float16():
    # A real checkpoint where $DIFFUSION_INTERNALS_SD_MODEL names one or SD 1.5 is cached, else the tiny pipeline.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the tiny pipeline's notice, where it is the tiny one
        pipe = sd.load_pipeline()
    assert pipe.device.type == "cuda" and pipe.unet.dtype == torch.float16
    sd.use_sampler(pipe, "DPM++ 2M Karras")
    images = pipe(PROMPTS, num_inference_steps=10, generator=gen(0), output_type="pt").images
    assert images.is_cuda and bool(torch.isfinite(images).all())


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["DDIM", "DPM++ 2M Karras"])
def test_gpu_generate_matches_pipe_in_float16(name):
    # As test_generate_in_float16_matches_pipe, with CUDA's fp16 kernels: same bound, fp16 rounding only.
    pipe = sd.tiny_pipeline().to(device="cuda", dtype=torch.float16)
    sd.use_sampler(pipe, name)
    if name == "DDIM":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True)
    z = torch.randn(2, 4, 8, 8, generator=gen(0)).half().cuda()
    theirs = pipe(PROMPTS, num_inference_steps=12, guidance_scale=7.5, latents=z, output_type="pt").images
    ours = sd.generate(pipe, PROMPTS, name=name, steps=12, latents=z, output_type="pt")
    difference = (ours.float() - theirs.float()).abs()
    assert ours.is_cuda and difference.max().item() <= 2e-2 and difference.mean().item() <= 2e-3


@pytest.mark.gpu
@needs_cuda
def test_gpu_latency_benchmark_two_samplers(tmp_path):
    # SD 1.5's architecture in fp16 at 512x512, 2 samplers, 10 steps, batch 1, one repeat: a short run.
    out = tmp_path / "latency.csv"
    env = {k: v for k, v in os.environ.items() if k != pipelines.MODEL_ENV}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "sd_latency.py"),
            "--samplers",
            "DDIM",
            "Euler a",
            "--steps",
            "10",
            "--batch-sizes",
            "1",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["sampler"] for r in rows] == ["DDIM", "Euler a"]
    assert all(
        r["device"] == "cuda"
        and r["dtype"] == "float16"
        and r["resolution"] == "512x512"
        and r["pipeline"].startswith("sd15-architecture")
        and float(r["s_per_image"]) > 0
        for r in rows
    )
