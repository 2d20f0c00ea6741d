"""GPTQ (Frantar et al. 2022) as a calibration component: Hessians of each linear's inputs on the
quantized stream (the block's input is x_q), then the column solver of ``gptq_solver``.

``hessian`` says what the block's own linears are while their inputs are recorded:

* ``float``: all in float (one pass), as llm-compressor's sequential pipeline does;
* ``quantized``: all already round-to-nearest quantized (one pass; abqlab's first version);
* ``sequential``: sub-layer true-sequential: the consumers of the architecture's smoothing
  pairs in order (q/k/v, then o, then gate/up, then down for llama), each stage's Hessians
  recorded with the earlier stages already GPTQ-quantized and the later ones in float.

``act_aware``: fit the weights to the layer's quantized inputs (``gptq_act_aware``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from abqlab.calib.capture import input_rows, record_inputs
from abqlab.calib.components import Component
from abqlab.calib.components.gptq_act_aware import collect_moments, compensated_target
from abqlab.calib.components.gptq_solver import GPTQConfig, GPTQResult, gptq_quantize
from abqlab.calib.context import BlockContext
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.spec import FP_BITS

__all__ = ["GPTQ", "GPTQConfig", "GPTQResult", "gptq_quantize", "quant_conflict"]


class GPTQ(Component):
    config_class = GPTQConfig
    order = 90  # after every transform is baked

    def __init__(self, cfg: GPTQConfig) -> None:
        super().__init__(cfg)
        self.losses: dict[str, float] = {}

    def bake(self, ctx: BlockContext) -> None:
        self.losses = {}
        linears = {p: m for p, m in ctx.linears().items() if m.w_spec is not None}
        for linear in linears.values():
            linear.bake()
        done: set[str] = set()
        references = self.block_references(ctx, linears)
        for stage in stages(ctx, list(linears), self.cfg.hessian):
            if self.cfg.hessian == "quantized":
                float_paths: set[str] = set()
            else:
                float_paths = set(linears) - done
            aware = [p for p in stage if self.cfg.act_aware and linears[p].a_spec is not None]
            with quant_disabled([linears[p] for p in float_paths]):
                hessians = collect_hessians(
                    ctx, {p: linears[p] for p in stage if p not in aware},
                    self.cfg.skip_first_tokens,
                ) if len(aware) < len(stage) else {}
                moments = collect_moments(
                    ctx, {p: linears[p] for p in aware}, self.cfg.skip_first_tokens,
                    self.cfg.act_aware_target, references,
                ) if aware else {}
            for path in stage:
                if path in moments:
                    hessian, cross = moments.pop(path)
                    self.quantize(path, linears[path], hessian, cross)
                else:
                    self.quantize(path, linears[path], hessians.pop(path))
            done.update(stage)

    def block_references(
        self, ctx: BlockContext, linears: dict[str, FakeQuantLinear]
    ) -> dict[str, list[torch.Tensor]] | None:
        """For ``act_aware_target=block``: each act-quantized linear's input rows with the whole
        block in float on the quantized stream (recorded before any stage is quantized)."""
        if not (self.cfg.act_aware and self.cfg.act_aware_target == "block"):
            return None
        aware = {p: m for p, m in linears.items() if m.a_spec is not None}
        with quant_disabled(list(ctx.linears().values())):
            return record_inputs(aware, ctx.run_inputs, self.cfg.skip_first_tokens)

    @property
    def needs_float_inputs(self) -> bool:
        return self.cfg.act_aware and self.cfg.act_aware_target == "float"

    def quantize(
        self,
        path: str,
        linear: FakeQuantLinear,
        hessian: torch.Tensor,
        cross: torch.Tensor | None = None,
    ) -> None:
        """GPTQ on the linear's weight; with ``cross`` (C of ``gptq_act_aware``) on the target
        that compensates its activation quantizer, ``hessian`` then being H̃."""
        assert linear.w_spec is not None
        before = linear.weight.detach().float()
        target = before if cross is None else compensated_target(
            linear.weight, hessian, cross, self.cfg.act_aware_damp,
            self.cfg.act_aware_gap)
        result = gptq_quantize(target, hessian, linear.w_spec, self.cfg)
        delta = result.weight - target.float()
        self.losses[path] = float(((delta @ hessian) * delta).sum() / 2)
        linear.lorc_reference = before.clone()  # the float weight, for LoRC (quant/lorc.py)
        linear.weight.data.copy_(result.weight.to(linear.weight.dtype))
        linear.set_grid(result.scale.to(linear.weight), result.zero.to(linear.weight),
                        result.g_idx)

    def state(self) -> dict[str, Any]:
        """Each linear's GPTQ objective ½ tr(ΔW H ΔWᵀ) for the last block (ΔW from the act-aware
        target and H = H̃ with ``act_aware``)."""
        return dict(self.losses)


def stages(ctx: BlockContext, paths: list[str], mode: str) -> list[list[str]]:
    """Groups of linears quantized together: one group, or sub-layers in forward order."""
    if mode != "sequential":
        return [paths]
    ordered: list[list[str]] = []
    seen: set[str] = set()
    for pair in ctx.arch.smooth_pairs:
        stage = [p for p in pair.consumers if p in paths and p not in seen]
        if stage:
            ordered.append(stage)
            seen.update(stage)
    rest = [p for p in paths if p not in seen]
    return ordered + ([rest] if rest else [])


@contextlib.contextmanager
def quant_disabled(linears: list[FakeQuantLinear]) -> Iterator[None]:
    """Run the given fake-quant linears in float inside the ``with`` block."""
    before = [m.quant_enabled for m in linears]
    for m in linears:
        m.quant_enabled = False
    try:
        yield
    finally:
        for m, flag in zip(linears, before, strict=True):
            m.quant_enabled = flag


@contextlib.contextmanager
def hessian_hooks(
    linears: dict[str, nn.Module], skip_first_tokens: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the ``with``: every forward through ``linears`` adds to H = 2/n Σ xxᵀ of its input
    (after the first ``skip_first_tokens`` of each window); the yielded dict holds each H once
    the ``with`` ends."""
    sums = {
        p: torch.zeros(m.in_features, m.in_features, device=m.weight.device)
        for p, m in linears.items()
    }
    counts = dict.fromkeys(linears, 0)

    def hook_for(path: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            x = input_rows(inputs[0], module.in_features, skip_first_tokens)
            sums[path] += 2.0 * x.T @ x
            counts[path] += x.shape[0]

        return hook

    hessians: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(hook_for(p)) for p, m in linears.items()]
    try:
        yield hessians
    finally:
        for handle in handles:
            handle.remove()
    hessians.update({p: sums[p] / max(counts[p], 1) for p in linears})


def collect_hessians(
    ctx: BlockContext, linears: dict[str, FakeQuantLinear], skip_first_tokens: int = 0
) -> dict[str, torch.Tensor]:
    """H = 2/n Σ xxᵀ of each linear's input over every token of the calibration windows
    (after the first ``skip_first_tokens`` of each window), from one pass of the block."""
    with hessian_hooks(linears, skip_first_tokens) as hessians:
        ctx.run_inputs()
    return hessians


def quant_conflict(settings: dict[str, Any], quant: Any, save_model: bool) -> str | None:
    """Why these GPTQ settings cannot run with ``quant`` (one line), or None."""
    cfg = GPTQConfig(**settings)
    if quant.w_bits == FP_BITS:
        return "GPTQ needs quantized weights (quant.w_bits < 16)"
    if quant.w_group == 0:
        return "GPTQ supports per-channel (w_group=-1) or grouped weights, not per-tensor (0)"
    if cfg.groups == "dynamic" and cfg.act_order and quant.w_group > 0 and save_model:
        return ("act_order with groups=dynamic stores a per-column g_idx that the export "
                "(calib.save_model) does not support; use groups=static")
    return None
