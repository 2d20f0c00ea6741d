"""One entry point for text: the configured source's documents, joined, and token windows."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from abqlab.config import DataConfig
from abqlab.data.hf import hf_articles
from abqlab.data.text import text_articles
from abqlab.data.wiki import wiki_articles

SOURCES = ("embedded", "hf", "text")
SEPARATOR = "\n\n"


def articles(cfg: DataConfig, split: str) -> tuple[str, ...]:
    """Documents of ``split`` from the configured source."""
    if cfg.source == "embedded":
        docs = wiki_articles(split, cfg.test_every)
    elif cfg.source == "hf":
        docs = hf_articles(cfg, split)
    elif cfg.source == "text":
        docs = text_articles(cfg, split)
    else:
        raise ValueError(f"data.source={cfg.source}: allowed: {', '.join(SOURCES)}")
    if split == "test" and cfg.skip_test_docs:
        docs = docs[cfg.skip_test_docs :]
    if split == "test" and cfg.max_test_docs:
        docs = docs[: cfg.max_test_docs]
    return docs


def split_text(cfg: DataConfig, split: str) -> str:
    """The split as one text (documents separated by a blank line)."""
    return SEPARATOR.join(articles(cfg, split))


_STREAMS: dict[tuple[str, int, str], torch.Tensor] = {}


def token_stream(tokenizer: Any, text: str) -> torch.Tensor:
    """All tokens of ``text`` as one 1-D tensor (no special tokens); memoized per process."""
    digest = hashlib.sha1(text.encode()).hexdigest()
    key = (str(getattr(tokenizer, "name_or_path", "")), len(tokenizer), digest)
    if key not in _STREAMS:
        ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False).input_ids
        _STREAMS[key] = torch.tensor(ids, dtype=torch.long)
    return _STREAMS[key]


def calibration_windows(
    tokenizer: Any, cfg: DataConfig, nsamples: int, seqlen: int, seed: int, add_bos: bool
) -> torch.Tensor:
    """``nsamples`` random windows of ``seqlen`` tokens from the train split, [nsamples, seqlen].

    With ``add_bos`` each window starts with BOS followed by ``seqlen - 1`` text tokens.
    """
    stream = token_stream(tokenizer, split_text(cfg, "train"))
    body = seqlen - 1 if add_bos else seqlen
    if stream.numel() <= body:
        raise ValueError(f"train split has {stream.numel()} tokens, fewer than seqlen {seqlen}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, stream.numel() - body, (nsamples,), generator=generator)
    windows = torch.stack([stream[s : s + body] for s in starts.tolist()])
    if add_bos:
        bos = torch.full((nsamples, 1), tokenizer.bos_token_id, dtype=torch.long)
        windows = torch.cat([bos, windows], dim=1)
    return windows
