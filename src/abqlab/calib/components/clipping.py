"""Learnable weight clipping (LWC, OmniQuant): the range of each weight group is
[σ(low)·min, σ(up)·max], with σ the sigmoid; the bounds are learned, then baked into the grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from abqlab.calib.components import Component, ComponentConfig
from abqlab.calib.context import BlockContext


@dataclass
class ClippingConfig(ComponentConfig):
    lr: float = 1e-1  # σ'(4) ≈ 0.018: a logit step of 0.1 moves the bound by ~0.2% of its range
    init: float = 4.0  # σ(4) ≈ 0.982: start close to the full range
    linears: list[str] = field(default_factory=list)  # empty: every quantized linear


def make_clip(low: torch.Tensor, up: torch.Tensor) -> Any:
    def clip(grouped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.sigmoid(low) * grouped.amin(dim=-1, keepdim=True)
        hi = torch.sigmoid(up) * grouped.amax(dim=-1, keepdim=True)
        return lo, hi

    return clip


class Clipping(Component):
    config_class = ClippingConfig
    order = 30

    def __init__(self, cfg: ClippingConfig) -> None:
        super().__init__(cfg)
        self.bounds: dict[str, tuple[nn.Parameter, nn.Parameter]] = {}

    def attach(self, ctx: BlockContext) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for path, linear in ctx.linears().items():
            if linear.w_spec is None or (self.cfg.linears and path not in self.cfg.linears):
                continue
            shape = linear.grouped(linear.weight.detach()).shape[:-1] + (1,)
            device = linear.weight.device
            low = nn.Parameter(torch.full(shape, self.cfg.init, device=device))
            up = nn.Parameter(torch.full(shape, self.cfg.init, device=device))
            linear.clip = make_clip(low, up)
            self.bounds[path] = (low, up)
            params += [low, up]
        return params

    def state(self) -> dict[str, Any]:
        return {
            path: {"low": low.detach().cpu().clone(), "up": up.detach().cpu().clone()}
            for path, (low, up) in self.bounds.items()
        }
