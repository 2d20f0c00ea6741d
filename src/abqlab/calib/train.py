"""Training one block's calibration parameters against the weighted losses."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from abqlab.calib.components import Component
from abqlab.calib.context import BlockContext
from abqlab.calib.losses import LOSSES
from abqlab.calib.losses.terms import LossInputs
from abqlab.models.arch import get_module


class CalibrationDivergedError(FloatingPointError):
    """A calibration loss became NaN or infinite."""


def batch_kwargs(kwargs: dict[str, Any], size: int) -> dict[str, Any]:
    """Forward kwargs for a batch of ``size`` (the captured mask may have a larger batch)."""
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.shape[0] not in (1, size):
        return {**kwargs, "attention_mask": mask[:size]}
    return kwargs


def forward(block: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    out = block(x, **batch_kwargs(kwargs, x.shape[0]))
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_block(
    block: nn.Module, x: torch.Tensor, kwargs: dict[str, Any], batch_size: int
) -> torch.Tensor:
    """The block's output for every row of ``x``, batch by batch, in fp32."""
    return torch.cat([forward(block, b, kwargs).float() for b in x.split(batch_size)])


def recorded_attention(
    block: nn.Module, attention_path: str, x: torch.Tensor, kwargs: dict[str, Any]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Block output and the attention probabilities recorded during that forward."""
    attention = get_module(block, attention_path)
    attention.abqlab_record = []
    try:
        out = forward(block, x, kwargs)
        return out, attention.abqlab_record
    finally:
        attention.abqlab_record = None


class BlockTrainer:
    """AdamW over the components' parameters (one lr group each), weighted losses, STE."""

    def __init__(self, calib: Any, kwargs: dict[str, Any]) -> None:
        self.calib = calib
        self.kwargs = kwargs
        self.weights = {name: float(w) for name, w in calib.losses.items() if float(w) != 0.0}
        self.terms = {name: LOSSES.get(name) for name in self.weights}
        self.needs_fp_block = "akl" in self.weights

    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        parts = {name: term(inputs) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, {name: value.item() for name, value in parts.items()}

    def step_inputs(
        self,
        ctx: BlockContext,
        fp_block: nn.Module | None,
        x_fp: torch.Tensor,
        x_q: torch.Tensor,
        target_fp: torch.Tensor,
        target_fpstar: torch.Tensor,
    ) -> LossInputs:
        attention = ctx.arch.attention
        if fp_block is None:
            output = forward(ctx.block, x_q, self.kwargs)
            return LossInputs(output, target_fp, target_fpstar)
        output, attn_q = recorded_attention(ctx.block, attention, x_q, self.kwargs)
        with torch.no_grad():
            _, attn_fp = recorded_attention(fp_block, attention, x_fp, self.kwargs)
        return LossInputs(output, target_fp, target_fpstar, attn_q, attn_fp)

    def train(
        self,
        ctx: BlockContext,
        fp_block: nn.Module | None,
        groups: list[tuple[Component, list[nn.Parameter]]],
        x_fp: torch.Tensor,
        x_q: torch.Tensor,
        target_fp: torch.Tensor,
        target_fpstar: torch.Tensor,
        progress: Any,
    ) -> dict[str, float]:
        """Optimise for ``calib.epochs``; returns the last epoch's mean losses."""
        param_groups = [{"params": p, "lr": c.cfg.lr} for c, p in groups if p]
        if not param_groups or self.calib.epochs <= 0 or not self.weights:
            return {}
        optimizer = torch.optim.AdamW(param_groups, weight_decay=0.0)
        generator = torch.Generator().manual_seed(self.calib.seed + ctx.index)
        size = self.calib.batch_size
        means: dict[str, float] = {}
        for epoch in range(self.calib.epochs):
            sums: dict[str, float] = {}
            order = torch.randperm(x_q.shape[0], generator=generator).split(size)
            for rows in order:
                inputs = self.step_inputs(
                    ctx, fp_block, x_fp[rows], x_q[rows], target_fp[rows], target_fpstar[rows]
                )
                total, parts = self.loss(inputs)
                if not math.isfinite(total.item()):
                    raise CalibrationDivergedError(
                        f"block {ctx.index} epoch {epoch}: loss is {total.item()} ({parts})"
                    )
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                for name, value in {"loss": total.item(), **parts}.items():
                    sums[name] = sums.get(name, 0.0) + value
            means = {name: value / len(order) for name, value in sums.items()}
            progress.set_postfix(block=ctx.index, epoch=epoch, loss=f"{means['loss']:.4g}")
        return means
