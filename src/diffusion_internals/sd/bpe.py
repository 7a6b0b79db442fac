"""The tiny CLIP tokenizer's vocabulary: byte-level BPE learned from a few hundred common English words.

CLIP's tokenizer (Radford et al. 2021) is byte-pair encoding (Sennrich et al. 2016) over bytes
mapped to printable characters (GPT-2's ``bytes_to_unicode``), with ``</w>`` marking the end of a
word. Its files, ``vocab.json`` and ``merges.txt``, are laid out as:

    vocab:  the 256 byte characters, the same 256 with "</w>", one token per merge (in merge order),
            then "<|startoftext|>" and "<|endoftext|>"          (49408 entries for CLIP ViT-L/14)
    merges: "#version: 0.2", then one "left right" pair per line, most frequent first

The real files hold 48,894 merges learned from CLIP's training text; ``tiny_pipeline`` needs a
tokenizer that works offline, so this module learns a few hundred merges from ``WORDS`` below and
writes them in the same format into ``tokenizer/`` next to this file (package data):

    python -m diffusion_internals.sd.bpe   # regenerate src/diffusion_internals/sd/tokenizer/
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

from diffusion_internals.validation import check_int

__all__ = ["WORDS", "SPECIAL_TOKENS", "TOKENIZER_DIR", "bytes_to_unicode", "learn_merges", "build_vocab", "write"]

TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
MAX_LENGTH = 77  # CLIP's context length, tokenizer.model_max_length in Stable Diffusion

# Common English words and the words of image prompts; every merge is learned from these alone.
WORDS = list(
    dict.fromkeys(
        """
a an the of and or in on at to from with without by for as is are was be it its this that these those
there here not no very more most some many all one two three four five six seven eight nine ten
i you he she we they my your his her our their me him us them who what which when where why how
have has had do does did make made take go going come see look like get use used using can will would
photo photograph picture image painting drawing sketch illustration render portrait landscape still
life close up view shot style art artist digital oil watercolor pencil ink pastel acrylic canvas
high quality detailed highly sharp focus soft light lighting dark bright colorful color colors black
white red green blue yellow orange purple pink brown gray grey gold golden silver warm cold cool
cat cats dog dogs bird birds horse fish lion tiger bear fox wolf rabbit mouse owl eagle duck cow
sheep animal animals flower flowers tree trees forest garden grass leaf leaves rose sunflower
man woman men women person people child children boy girl baby family friend friends king queen
face eyes hair hand hands smile young old beautiful cute happy sad small big large little tall long
house home city street road bridge building castle tower church room kitchen window door wall
table chair bed car train boat ship plane bicycle
sky sun moon star stars cloud clouds rain snow storm wind sunset sunrise night day morning evening
mountain mountains river lake sea ocean beach island desert field valley hill water fire ice stone
rock sand wood glass metal paper
food apple orange bread cake coffee tea wine cup bowl plate fruit
in front behind under over above near next between inside outside top bottom left right middle
standing sitting walking running flying swimming sleeping playing reading wearing holding
eating drinking looking smiling
hat dress shirt coat shoes glasses book books music guitar piano clock
time year years world new first last best good great nice fine simple natural real realistic
photorealistic cinematic dramatic epic fantasy magic ancient modern future futuristic vintage
retro classic abstract surreal minimal minimalist mood atmosphere scene background foreground
detail details texture pattern shape shapes line lines circle square
""".split()
    )
)  # each word once


def bytes_to_unicode() -> dict[int, str]:
    """Each of the 256 bytes as a printable character, GPT-2's table (Radford et al. 2019; CLIP reuses it)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)  # the unprintable bytes get characters above U+00FF, in order
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _symbols(word: str, byte_chars: dict[int, str]) -> tuple[str, ...]:
    """A word as byte characters, the last one carrying "</w>" (CLIP's end-of-word marker)."""
    chars = [byte_chars[b] for b in word.encode("utf-8")]
    return (*chars[:-1], chars[-1] + "</w>")


def learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Up to num_merges BPE merges, the most frequent pair first, ties by pair order (Sennrich et al. 2016, Alg. 1)."""
    check_int("num_merges", num_merges, minimum=0)
    byte_chars = bytes_to_unicode()
    counts = collections.Counter(_symbols(word.lower(), byte_chars) for word in words)
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for symbols, n in counts.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += n
        if not pairs:  # every word is one token
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))  # deterministic: lexicographic among ties
        merges.append(best)
        merged: collections.Counter[tuple[str, ...]] = collections.Counter()
        for symbols, n in counts.items():
            out, i = [], 0
            while i < len(symbols):
                if symbols[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += n
        counts = merged
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """token -> id in CLIP's order: bytes, bytes + "</w>", merge results, then the two special tokens."""
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base] + [left + right for left, right in merges] + list(SPECIAL_TOKENS)
    if len(set(tokens)) != len(tokens):
        raise ValueError("merges must each make a new token (two merges give the same string)")
    return {token: i for i, token in enumerate(tokens)}


def write(folder: str | Path = TOKENIZER_DIR, *, words: list[str] = WORDS, num_merges: int = 1000) -> Path:
    """Learn the merges and write vocab.json, merges.txt and tokenizer_config.json into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(words, num_merges)
    (folder / "vocab.json").write_text(json.dumps(build_vocab(merges), ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["#version: 0.2", *(f"{left} {right}" for left, right in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "unk_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[1],
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return folder


if __name__ == "__main__":
    print(f"wrote {write()}")
