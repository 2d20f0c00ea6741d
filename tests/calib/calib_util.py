"""Helpers shared by the calibrator tests: a tiny GQA llama, one block ready to calibrate."""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from abqlab.calib.capture import capture_block_inputs
from abqlab.calib.context import BlockContext
from abqlab.calib.stats import input_absmax
from abqlab.calib.train import run_block
from abqlab.config import ModelConfig, QuantConfig
from abqlab.models.arch import blocks_of
from abqlab.models.load import LoadedModel, load_model
from abqlab.quant.apply import quantize_block, use_abqlab_attention

HIDDEN, INTER, HEADS, KV_HEADS = 64, 128, 4, 2
HEAD_DIM = HIDDEN // HEADS
TINY_GQA = {
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": HIDDEN,
    "intermediate_size": INTER,
    "num_hidden_layers": 2,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "max_position_embeddings": 128,
    "initializer_range": 0.2,
}
FLOAT = QuantConfig(name="fp")


@functools.cache
def _tiny_llama(seed: int) -> LoadedModel:
    cfg = ModelConfig(name="tiny-gqa", source="random", random_config=dict(TINY_GQA), device="cpu")
    loaded = load_model(cfg, seed)
    use_abqlab_attention(loaded.model)
    return loaded


def tiny_llama(seed: int = 0) -> LoadedModel:
    """A private copy of a random 2-layer llama with GQA (4 query heads share 2 kv heads)."""
    loaded = _tiny_llama(seed)
    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-unit RMSNorm weights, so folding into them is visible."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if "norm" in name:
            param.data.copy_(0.5 + torch.rand(param.shape, generator=generator))


@dataclass
class BlockCase:
    """Block ``index`` of a model, its float twin, its captured inputs and forward kwargs."""

    loaded: LoadedModel
    index: int
    block: nn.Module
    float_block: nn.Module
    x: torch.Tensor
    kwargs: dict[str, Any]

    def run(self, block: nn.Module | None = None) -> torch.Tensor:
        return run_block(block or self.block, self.x, self.kwargs, batch_size=self.x.shape[0])

    def quantize(self, quant: QuantConfig) -> None:
        arch = self.loaded.arch
        quantize_block(self.block, arch, quant, f"{arch.blocks}.{self.index}")

    def context(
        self, quant: QuantConfig, n_blocks: int | None = None, index: int | None = None
    ) -> BlockContext:
        """Quantize the block (idempotent) and describe it as the runner does."""
        arch = self.loaded.arch
        stats = input_absmax(self.float_block, arch.linears, self.x, self.kwargs, self.x.shape[0])
        self.quantize(quant)
        return BlockContext(
            self.block,
            self.index if index is None else index,
            n_blocks or len(blocks_of(self.loaded.model, arch)),
            arch,
            quant,
            self.loaded.model.config,
            stats,
            run_inputs=lambda: self.run(),
        )


def block_case(loaded: LoadedModel, index: int = 0, n: int = 3, seqlen: int = 16) -> BlockCase:
    """Block ``index``'s inputs for ``n`` random token windows (float model up to the block)."""
    generator = torch.Generator().manual_seed(1234 + index)
    vocab = loaded.model.config.vocab_size
    windows = torch.randint(0, vocab, (n, seqlen), generator=generator)
    arch = loaded.arch
    x, kwargs = capture_block_inputs(loaded.model, arch, windows, n, torch.device("cpu"))
    blocks = blocks_of(loaded.model, arch)
    for block in list(blocks)[:index]:
        x = run_block(block, x, kwargs, n)
    block = blocks[index]
    return BlockCase(loaded, index, block, copy.deepcopy(block), x, kwargs)
