"""What a calibration component sees of the block being calibrated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from abqlab.config import QuantConfig
from abqlab.models.arch import ArchSpec, get_module
from abqlab.quant.fake_linear import FakeQuantLinear


@dataclass
class BlockContext:
    """One block under calibration.

    ``stats`` maps a linear's path (relative to the block) to the per-input-channel absolute
    maximum of its float input over the calibration set. ``run_inputs`` runs the block on the
    quantized stream (for components that need the inputs each linear sees, e.g. GPTQ);
    ``float_block`` / ``run_float_inputs``: a float copy of the block and a pass of it over the
    float model's stream, set when a component ``needs_float_inputs``.
    """

    block: nn.Module
    index: int
    n_blocks: int
    arch: ArchSpec
    quant: QuantConfig
    model_config: Any
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    run_inputs: Any = None
    float_block: nn.Module | None = None
    run_float_inputs: Any = None

    def linear(self, path: str) -> FakeQuantLinear:
        module = get_module(self.block, path)
        if not isinstance(module, FakeQuantLinear):
            raise TypeError(f"{path} is not a FakeQuantLinear (was the block quantized?)")
        return module

    def linears(self) -> dict[str, FakeQuantLinear]:
        """The block's fake-quant linears by relative path."""
        return {
            path: module
            for path, module in self.block.named_modules()
            if isinstance(module, FakeQuantLinear)
        }

    @property
    def kv_repeat(self) -> int:
        """Query heads per key/value head (GQA); 1 without GQA."""
        heads = self.model_config.num_attention_heads
        return heads // (getattr(self.model_config, "num_key_value_heads", None) or heads)

    @property
    def head_dim(self) -> int:
        cfg = self.model_config
        return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
