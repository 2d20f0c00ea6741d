"""Activation clip search: a clip ratio of the per-token activation range for each linear.

``quant.a_clip`` shrinks every linear's dynamic per-token range by one ratio (QuaRot uses 0.9).
This component chooses the ratio per linear instead: after the block's weights are final (it runs
after GPTQ), each quantized-activation linear's inputs over the calibration windows are captured
(the quantized stream, after any online rotation) and the ratio from ``ratios`` that minimises
the output error ‖Q_c(x) Ŵᵀ − x Wᵀ‖² (Ŵ the quantized weight, W the float weight before
calibration when GPTQ kept it, else the current one) is set on the linear. Linears are searched
in block order, stage by stage (q/k/v, o, gate/up, down), so each sees its inputs under the
ratios already chosen upstream. ``shared``: the linears reading one tensor (q/k/v, gate/up) get
one ratio, minimising their summed error — what a fused kernel that quantizes the tensor once
can run. ``before_gptq``: search before GPTQ instead (order 85), on the float weights
(‖(Q_c(x) − x) Wᵀ‖²), so that ``gptq.act_aware`` fits the weights to the chosen clip. No
training; the ratio is saved with the quantized model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from abqlab.calib.capture import record_inputs
from abqlab.calib.components import Component, ComponentConfig
from abqlab.calib.context import BlockContext
from abqlab.quant.fake_linear import FakeQuantLinear

DEFAULT_RATIOS = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5]


@dataclass
class ActClipConfig(ComponentConfig):
    ratios: list[float] = field(default_factory=lambda: list(DEFAULT_RATIOS))
    max_tokens: int = 4096  # tokens per linear used in the search (evenly spaced subsample)
    shared: bool = False  # one ratio per input tensor (q/k/v, gate/up) instead of per linear
    before_gptq: bool = False  # search on the float weights before GPTQ (for gptq.act_aware)

    def __post_init__(self) -> None:
        if not self.ratios or not all(0.0 < r <= 1.0 for r in self.ratios):
            raise ValueError(f"act_clip.ratios={self.ratios}: ratios in (0, 1], at least one")
        if self.max_tokens < 1:
            raise ValueError(f"act_clip.max_tokens={self.max_tokens}: at least 1")


def capture_inputs(ctx: BlockContext, linears: dict[str, FakeQuantLinear], max_tokens: int
                   ) -> dict[str, torch.Tensor]:
    """Each linear's input rows [tokens, in_features] from one pass of the block (subsampled)."""
    rows = {p: torch.cat(xs) for p, xs in record_inputs(linears, ctx.run_inputs).items()}
    return {p: x[torch.linspace(0, len(x) - 1, min(max_tokens, len(x))).long()]
            for p, x in rows.items()}


def output_error(linear: FakeQuantLinear, x: torch.Tensor, ratio: float,
                 quantized: torch.Tensor, reference: torch.Tensor) -> float:
    """‖Q_ratio(x) Ŵᵀ − x Wᵀ‖² (biases cancel)."""
    assert linear.a_spec is not None
    saved, linear.a_clip = linear.a_clip, ratio
    try:
        xq = linear.quantized_input(x)
    finally:
        linear.a_clip = saved
    return float((F.linear(xq, quantized) - F.linear(x, reference)).pow(2).sum())


def best_ratio(linear: FakeQuantLinear, x: torch.Tensor, ratios: list[float],
               float_weights: bool = False) -> tuple[float, dict[float, float]]:
    """The ratio of least output error, and every ratio's error; ``float_weights``: against
    the unquantized weight (activation error only)."""
    with torch.no_grad():
        weight, _ = linear.transformed()
        quantized = weight.float() if float_weights else linear.quantized_weight(weight).float()
        reference = getattr(linear, "lorc_reference", None)
        reference = weight.float() if reference is None else reference.float()
        errors = {r: output_error(linear, x, r, quantized, reference) for r in ratios}
    return min(errors, key=errors.get), errors


def stages(ctx: BlockContext, paths: list[str]) -> list[list[str]]:
    """Linears grouped by the tensor they read, in block order (q/k/v | o | gate/up | down)."""
    order = [p for p in ctx.arch.linears if p in paths]
    readers = [set(group) for _, group in ctx.arch.norm_readers]
    grouped: list[list[str]] = []
    for path in order:
        group = next((g for g in readers if path in g), None)
        if group is not None and grouped and grouped[-1][0] in group:
            grouped[-1].append(path)
        else:
            grouped.append([path])
    return grouped


class ActClip(Component):
    config_class = ActClipConfig
    order = 95  # after GPTQ (90): the search sees the final weights

    def __init__(self, cfg: ActClipConfig) -> None:
        super().__init__(cfg)
        self.chosen: dict[str, float] = {}
        if cfg.before_gptq:
            self.order = 85

    def bake(self, ctx: BlockContext) -> None:
        self.chosen = {}
        linears = {p: m for p, m in ctx.linears().items() if m.a_spec is not None}
        for stage in stages(ctx, list(linears)):
            inputs = capture_inputs(ctx, {p: linears[p] for p in stage}, self.cfg.max_tokens)
            errors = {p: best_ratio(linears[p], inputs[p], self.cfg.ratios,
                                    self.cfg.before_gptq)[1] for p in stage}
            for group in ([stage] if self.cfg.shared else [[p] for p in stage]):
                total = {r: sum(errors[p][r] for p in group) for r in self.cfg.ratios}
                ratio = min(total, key=total.get)
                for path in group:
                    linears[path].a_clip = ratio
                    self.chosen[path] = ratio

    def state(self) -> dict[str, Any]:
        """The chosen ratio of each linear of the last block."""
        return dict(self.chosen)
