"""Training one block's calibration parameters against the weighted losses.

Each block is scored on all its calibration windows before training (epoch −1) and after every
epoch; with ``calib.select=best`` the parameters of the best-scoring epoch are restored at the end,
so a block never ends worse than its initialisation on the windows it trains on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from abqlab.calib.components import Component
from abqlab.calib.context import BlockContext
from abqlab.calib.curve import BlockCurve
from abqlab.calib.losses import LOSSES
from abqlab.calib.losses.terms import LossInputs
from abqlab.calib.schedule import lr_lambda
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


@dataclass
class Streams:
    """One block's calibration data: both input streams and both float targets."""

    x_fp: torch.Tensor
    x_q: torch.Tensor
    target_fp: torch.Tensor
    target_fpstar: torch.Tensor

    def __len__(self) -> int:
        return self.x_q.shape[0]

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.x_fp[index], self.x_q[index], self.target_fp[index], self.target_fpstar[index]


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

    def checked_loss(
        self, ctx: BlockContext, epoch: int, inputs: LossInputs
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = self.loss(inputs)
        if not math.isfinite(total.item()):
            raise CalibrationDivergedError(
                f"block {ctx.index} epoch {epoch}: loss is {total.item()} ({parts})"
            )
        return total, {"loss": total.item(), **parts}

    @torch.no_grad()
    def evaluate(
        self, ctx: BlockContext, fp_block: nn.Module | None, data: Streams, epoch: int
    ) -> dict[str, float]:
        """Mean losses over every calibration window with the current parameters."""
        sums: dict[str, float] = {}
        for rows in torch.arange(len(data)).split(self.calib.batch_size):
            inputs = self.step_inputs(ctx, fp_block, *data.rows(rows))
            _, parts = self.checked_loss(ctx, epoch, inputs)
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value * len(rows)
        return {name: value / len(data) for name, value in sums.items()}

    def train(
        self,
        ctx: BlockContext,
        fp_block: nn.Module | None,
        groups: list[tuple[Component, list[nn.Parameter]]],
        x_fp: torch.Tensor,
        x_q: torch.Tensor,
        target_fp: torch.Tensor | None,
        target_fpstar: torch.Tensor | None,
        progress: Any,
    ) -> dict[str, Any]:
        """Optimise for up to ``calib.epochs``; returns the selected epoch's losses and the curve.

        The returned dict holds the evaluated losses of the parameters the block keeps
        (``loss``, one key per term), ``init_loss``, ``best_epoch`` (−1: the initialisation was
        best) and ``curve`` (per-epoch train and eval losses).
        """
        param_groups = [{"params": p, "lr": c.cfg.lr} for c, p in groups if p]
        if not param_groups or self.calib.epochs <= 0 or not self.weights:
            return {}
        params = [p for group in param_groups for p in group["params"]]
        data = Streams(x_fp, x_q, target_fp, target_fpstar)
        steps_per_epoch = math.ceil(len(data) / self.calib.batch_size)
        optimizer = torch.optim.AdamW(param_groups, weight_decay=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.calib, steps_per_epoch * self.calib.epochs)
        )
        generator = torch.Generator().manual_seed(self.calib.seed + ctx.index)
        curve = BlockCurve(self.evaluate(ctx, fp_block, data, -1), params)
        for epoch in range(self.calib.epochs):
            sums: dict[str, float] = {}
            for rows in torch.randperm(len(data), generator=generator).split(self.calib.batch_size):
                inputs = self.step_inputs(ctx, fp_block, *data.rows(rows))
                total, parts = self.checked_loss(ctx, epoch, inputs)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if self.calib.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, self.calib.grad_clip)
                optimizer.step()
                scheduler.step()
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value / steps_per_epoch
            evaluated = self.evaluate(ctx, fp_block, data, epoch)
            curve.add(epoch, sums, evaluated, params)
            progress.set_postfix(block=ctx.index, epoch=epoch, loss=f"{evaluated['loss']:.4g}")
            if curve.stale_epochs() >= self.calib.patience > 0:
                break
        if self.calib.select == "best":
            curve.restore_best(params)
        return curve.summary(self.calib.select)
