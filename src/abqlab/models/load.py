"""Load a causal LM and its tokenizer from config: embedded, hub id / folder, GGUF, random."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abqlab.config import ModelConfig
from abqlab.models.arch import ArchSpec, arch_for
from abqlab.models.embedded import cache_root, convert_gguf, embedded_model_dir

SOURCES = ("embedded", "hf", "gguf", "random")
HF_PATHS = "a local model folder, or a hub id (needs the network or the HF cache)"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    arch: ArchSpec
    add_bos: bool
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_location(cfg: ModelConfig) -> str:
    """A folder or hub id that ``from_pretrained`` accepts (converting GGUF files once)."""
    if cfg.source == "embedded":
        return str(embedded_model_dir(cfg.cache_dir))
    if cfg.source == "gguf":
        gguf = Path(cfg.path or "").expanduser()
        if not cfg.path or not gguf.is_file():
            raise FileNotFoundError(f"model.path={cfg.path}: allowed: an existing .gguf file")
        digest = hashlib.sha1(str(gguf.resolve()).encode()).hexdigest()[:10]
        target = cache_root(cfg.cache_dir) / f"gguf-{gguf.stem}-{digest}"
        return str(convert_gguf(gguf, target))
    if cfg.source == "hf":
        if not cfg.path:
            raise FileNotFoundError(f"model.path={cfg.path}: allowed: {HF_PATHS}")
        return cfg.path
    raise ValueError(f"model.source={cfg.source}: allowed: {', '.join(SOURCES)}")


def load_config(cfg: ModelConfig) -> Any:
    """The transformers config alone (cheap): used to validate before loading weights."""
    from transformers import AutoConfig

    if cfg.source == "random":
        settings = dict(cfg.random_config)
        return AutoConfig.for_model(settings.pop("model_type", "llama"), **settings)
    location = model_location(cfg)
    try:
        config = AutoConfig.from_pretrained(location, revision=cfg.revision)
    except OSError as error:  # offline hub id, missing folder, typo: one line, not a traceback
        if cfg.source != "hf":
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(f"model.path={cfg.path}: allowed: {HF_PATHS} ({reason})") from error
    if cfg.num_hidden_layers is not None:
        config.num_hidden_layers = cfg.num_hidden_layers
    return config


def load_tokenizer(cfg: ModelConfig) -> Any:
    """``model.tokenizer`` if given, else the model's own; random models borrow SmolLM2's."""
    from transformers import AutoTokenizer

    if cfg.tokenizer:
        return AutoTokenizer.from_pretrained(cfg.tokenizer)
    if cfg.source == "random":
        return AutoTokenizer.from_pretrained(str(embedded_model_dir(cfg.cache_dir)))
    return AutoTokenizer.from_pretrained(model_location(cfg), revision=cfg.revision)


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether encoding text puts the BOS token first."""
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("hello").input_ids
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def resolve_add_bos(setting: str, tokenizer: Any) -> bool:
    """``auto`` follows the tokenizer; ``true``/``false`` force it."""
    if setting == "auto":
        return tokenizer_adds_bos(tokenizer)
    return str(setting).lower() == "true" and tokenizer.bos_token_id is not None


def load_model(cfg: ModelConfig, seed: int = 0) -> LoadedModel:
    """Model in eval mode on the configured device and dtype, with tokenizer and architecture."""
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[cfg.dtype]
    device = resolve_device(cfg.device)
    config = load_config(cfg)
    if cfg.source == "random":
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            model_location(cfg), config=config, dtype=dtype, revision=cfg.revision
        )
    model.to(device).eval()
    model.requires_grad_(False)
    tokenizer = load_tokenizer(cfg)
    arch = arch_for(config.model_type)
    return LoadedModel(model, tokenizer, arch, resolve_add_bos(cfg.add_bos, tokenizer), device)
