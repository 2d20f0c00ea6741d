"""Learnable per-channel smoothing (SmoothQuant's scales, learned as in OmniQuant/ABQ-LLM).

For each pair, x → x / s at the producer and W → W · s at the consumers, so the float function
is unchanged while activation outliers move into the weights. Initialised in closed form,
s = max|x|^α / max|W|^(1−α); with ``learnable: false`` it is SmoothQuant.

Learned in log space by default (``param: log``, s = exp(θ)): an optimizer step then changes every
channel by the same relative amount. Learned directly (``param: linear``, as OmniQuant's code
does), a fixed-lr Adam step moves a channel with s ≈ 0.02 by 25% per step; on SmolLM2 such
channels cross zero within one epoch and the clamp at MIN_SCALE then blows them up by 1e3–1e5
(experiments/calib_diagnosis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from abqlab.calib.components import Component, ComponentConfig
from abqlab.calib.context import BlockContext
from abqlab.models.arch import SmoothPair, get_module
from abqlab.quant.fake_linear import FakeQuantLinear

MIN_SCALE = 1e-5


@dataclass
class SmoothingConfig(ComponentConfig):
    lr: float = 2e-2  # in log space: ≤ 2% change per step
    alpha: float = 0.5
    learnable: bool = True
    param: str = "log"  # log: s = exp(θ) (relative steps); linear: s = θ, clamped at MIN_SCALE
    # closed_form | identity (s = 1) | auto: closed form where activations are quantized, identity
    # for weight-only settings. Measured (abq W3A16, 1 seed): closed form 84.9 ppl, identity 89.8
    init: str = "closed_form"
    pairs: list[str] = field(default_factory=lambda: ["qkv", "vo", "gate_up", "up_down"])


def group_max(values: torch.Tensor, repeat: int, head_dim: int) -> torch.Tensor:
    """Reduce a per-query-head-channel vector to per-kv-channel by max over the repeats."""
    return values.view(-1, repeat, head_dim).amax(dim=1).reshape(-1)


def expand_kv(scale: torch.Tensor, repeat: int, head_dim: int) -> torch.Tensor:
    """Per-kv-channel scale → per-query-head-channel (the head order of ``repeat_kv``)."""
    kv_heads = scale.numel() // head_dim
    return scale.view(kv_heads, 1, head_dim).expand(kv_heads, repeat, head_dim).reshape(-1)


PARAMETRIZATIONS = ("log", "linear")
INITS = ("auto", "closed_form", "identity")


class ScaleParameter(nn.Module):
    """A positive per-channel scale, stored as θ = log s (``log``) or θ = s (``linear``)."""

    def __init__(self, init: torch.Tensor, param: str, learnable: bool) -> None:
        super().__init__()
        if param not in PARAMETRIZATIONS:
            raise ValueError(
                f"calib.components.smoothing.param={param}: allowed: {', '.join(PARAMETRIZATIONS)}"
            )
        self.log = param == "log"
        raw = init.clamp(min=MIN_SCALE)
        self.theta = nn.Parameter(raw.log() if self.log else raw, requires_grad=learnable)

    def forward(self) -> torch.Tensor:
        return self.theta.exp() if self.log else self.theta.clamp(min=MIN_SCALE)

    @torch.no_grad()
    def set(self, scale: torch.Tensor) -> None:
        """Set the scale's value (not θ) — for tests and checkpoint restore."""
        raw = scale.to(self.theta).clamp(min=MIN_SCALE)
        self.theta.copy_(raw.log() if self.log else raw)


class Smoothing(Component):
    config_class = SmoothingConfig
    order = 10
    needs_stats = True

    def __init__(self, cfg: SmoothingConfig) -> None:
        super().__init__(cfg)
        self.params: dict[str, ScaleParameter] = {}
        self.hooks: list[Any] = []

    @property
    def scales(self) -> dict[str, torch.Tensor]:
        """The current (positive) scale of each pair."""
        return {name: p() for name, p in self.params.items()}

    def initial_scale(self, ctx: BlockContext, pair: SmoothPair) -> torch.Tensor:
        if self.init_kind(ctx, pair) == "identity":
            consumer = ctx.linear(pair.consumers[0])
            width = consumer.in_features // (ctx.kv_repeat if pair.kv_groups else 1)
            return torch.ones(width, device=consumer.weight.device)
        act = ctx.stats[pair.consumers[0]].float()
        weights = [ctx.linear(path).weight.detach().float() for path in pair.consumers]
        w_max = torch.stack([w.abs().amax(dim=0) for w in weights]).amax(dim=0)
        if pair.kv_groups:
            act = group_max(act, ctx.kv_repeat, ctx.head_dim)
            w_max = group_max(w_max, ctx.kv_repeat, ctx.head_dim)
        alpha = self.cfg.alpha
        scale = act.clamp(min=MIN_SCALE).pow(alpha) / w_max.clamp(min=MIN_SCALE).pow(1 - alpha)
        return scale.clamp(min=MIN_SCALE)

    def init_kind(self, ctx: BlockContext, pair: SmoothPair) -> str:
        if self.cfg.init not in INITS:
            raise ValueError(
                f"calib.components.smoothing.init={self.cfg.init}: allowed: {', '.join(INITS)}"
            )
        if self.cfg.init != "auto":
            return self.cfg.init
        quantized_acts = ctx.linear(pair.consumers[0]).a_spec is not None
        return "closed_form" if quantized_acts else "identity"

    def attach(self, ctx: BlockContext) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        self.params = {}
        for pair in ctx.arch.smooth_pairs:
            if pair.name not in self.cfg.pairs:
                continue
            init = self.initial_scale(ctx, pair)
            scale = ScaleParameter(init, self.cfg.param, self.cfg.learnable)
            self.params[pair.name] = scale
            if self.cfg.learnable:
                params.append(scale.theta)
            self.install(ctx, pair, scale)
        return params

    def install(self, ctx: BlockContext, pair: SmoothPair, scale: ScaleParameter) -> None:
        """Divide the producer's output by s and multiply the consumers' input columns by s."""
        producer = get_module(ctx.block, pair.producer)
        if isinstance(producer, FakeQuantLinear):
            producer.weight_transforms.append(divide_rows(scale))
        else:
            self.hooks.append(producer.register_forward_hook(divide_output(scale)))
        repeat, head_dim = ctx.kv_repeat, ctx.head_dim
        for path in pair.consumers:
            columns = (lambda s: expand_kv(s, repeat, head_dim)) if pair.kv_groups else None
            ctx.linear(path).weight_transforms.append(multiply_columns(scale, columns))

    @torch.no_grad()
    def bake(self, ctx: BlockContext) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        for pair in ctx.arch.smooth_pairs:
            scale = self.params.get(pair.name)
            producer = get_module(ctx.block, pair.producer)
            if scale is not None and not isinstance(producer, FakeQuantLinear):
                producer.weight.div_(scale().detach().to(producer.weight))

    def state(self) -> dict[str, Any]:
        return {name: s.detach().cpu().clone() for name, s in self.scales.items()}


def divide_output(scale: ScaleParameter) -> Any:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output / scale().to(output.dtype)

    return hook


def divide_rows(scale: ScaleParameter) -> Any:
    def transform(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        s = scale().to(weight.dtype)
        return weight / s[:, None], None if bias is None else bias / s

    return transform


def multiply_columns(scale: ScaleParameter, expand: Any = None) -> Any:
    def transform(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        s = scale().to(weight.dtype)
        return weight * (expand(s) if expand else s)[None, :], bias

    return transform
