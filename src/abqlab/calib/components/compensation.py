"""Distribution-compensation vectors (ABQ-LLM): W_down ← W_down + a·bᵀ of rank r, learned
in chosen layers (by default the first 3 and the last 4, as in the paper), baked afterwards."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from abqlab.calib.components import Component, ComponentConfig
from abqlab.calib.context import BlockContext


@dataclass
class CompensationConfig(ComponentConfig):
    lr: float = 1e-2
    rank: int = 1
    layers: list[int] = field(default_factory=lambda: [0, 1, 2, -4, -3, -2, -1])
    target: str = ""  # empty: the architecture's down_proj


def selected(index: int, n_blocks: int, layers: list[int]) -> bool:
    """Whether block ``index`` is in ``layers`` (negative entries count from the end)."""
    return any(index == (layer if layer >= 0 else n_blocks + layer) for layer in layers)


def add_low_rank(left: torch.Tensor, right: torch.Tensor) -> Any:
    def transform(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        return weight + (left @ right.T).to(weight.dtype), bias

    return transform


class Compensation(Component):
    config_class = CompensationConfig
    order = 20

    def __init__(self, cfg: CompensationConfig) -> None:
        super().__init__(cfg)
        if cfg.rank < 1:
            raise ValueError(f"calib.components.compensation.rank={cfg.rank}: must be >= 1")
        self.vectors: dict[str, tuple[nn.Parameter, nn.Parameter]] = {}

    def attach(self, ctx: BlockContext) -> list[nn.Parameter]:
        self.vectors = {}
        if not selected(ctx.index, ctx.n_blocks, list(self.cfg.layers)):
            return []
        path = self.cfg.target or ctx.arch.down_proj
        linear = ctx.linear(path)
        device = linear.weight.device
        generator = torch.Generator(device="cpu").manual_seed(ctx.index)
        # a = 0 keeps the block unchanged at the start; b random so a gets a gradient
        left = nn.Parameter(torch.zeros(linear.out_features, self.cfg.rank, device=device))
        right = torch.randn(linear.in_features, self.cfg.rank, generator=generator)
        right = nn.Parameter((right / math.sqrt(linear.in_features)).to(device))
        linear.weight_transforms.append(add_low_rank(left, right))
        self.vectors[path] = (left, right)
        return [left, right]

    def state(self) -> dict[str, Any]:
        return {
            path: {"a": a.detach().cpu().clone(), "b": b.detach().cpu().clone()}
            for path, (a, b) in self.vectors.items()
        }
