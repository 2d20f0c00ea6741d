"""AWQ (Lin et al. 2023) as a calibration component: activation-aware per-channel scales, then
an optional weight-clipping search. Own implementation.

For each smoothing pair of the architecture (norm→q/k/v, v→o with GQA, norm→gate/up, up→down:
the same pairs and folding rules as ``smoothing``), the consumers' weights become W·s and the
producer's output x/s (folded into the norm weight or the producer's rows), so the float function
is unchanged. s = mean|x|^α / mean|Ŵ|^(1−α) (``duo``; Ŵ = |W| over its group's max; without duo
s = mean|x|^α), normalised by √(max s · min s), with α searched on a grid of ``n_grid`` values
in [0, 1) (α = 0 is s = 1) for the smallest output error of the quantized consumers,
Σ tr(ΔW H ΔWᵀ) with ΔW = Q(W·s)/s − W and H = XᵀX/n of the float block's inputs on the quantized
stream: the mean squared output error over every calibration token, without storing the tokens.
Clipping then shrinks each row group's range by the factor in (1 − ``clip_max_shrink``, 1]
that minimises the group's own output error Δw H_gg Δwᵀ, and fixes that grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from abqlab.calib.components import Component, ComponentConfig
from abqlab.calib.components.gptq import collect_hessians, quant_disabled
from abqlab.calib.components.smoothing import expand_kv
from abqlab.calib.context import BlockContext
from abqlab.models.arch import SmoothPair, get_module
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.quantizer import fake_quant, fake_quant_grouped, qparams, to_groups
from abqlab.quant.spec import FP_BITS, QuantSpec

MIN_SCALE = 1e-4
PAIRS = ("qkv", "vo", "gate_up", "up_down")


@dataclass
class AWQConfig(ComponentConfig):
    """AWQ settings; defaults are AutoAWQ's (20-point α grid, duo scaling, clipping search with
    shrink up to 0.5, q/k not clipped). SmolLM2 W4 g64 (experiments/peers): 16.33 vs
    llm-compressor's AWQ 16.90 and RTN 18.47, one seed."""

    n_grid: int = 20
    duo: bool = True
    pairs: list[str] = field(default_factory=lambda: list(PAIRS))
    clip: bool = True
    clip_grid: int = 20
    clip_max_shrink: float = 0.5
    clip_skip: list[str] = field(default_factory=lambda: ["self_attn.q_proj", "self_attn.k_proj"])

    def __post_init__(self) -> None:
        bad = [p for p in self.pairs if p not in PAIRS]
        if bad:
            raise ValueError(f"awq.pairs={bad}: allowed: {', '.join(PAIRS)}")
        if self.n_grid < 1 or self.clip_grid < 1:
            raise ValueError("awq.n_grid and awq.clip_grid must be >= 1")
        if not 0 <= self.clip_max_shrink < 1:
            raise ValueError(f"awq.clip_max_shrink={self.clip_max_shrink}: allowed: [0, 1)")


class AWQ(Component):
    config_class = AWQConfig
    order = 20  # after learned transforms would attach, before GPTQ (90)

    def __init__(self, cfg: AWQConfig) -> None:
        super().__init__(cfg)
        self.ratios: dict[str, float] = {}
        self.scales: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def bake(self, ctx: BlockContext) -> None:
        self.ratios, self.scales = {}, {}
        linears = ctx.linears()
        for linear in linears.values():
            linear.bake()
        pairs = [p for p in ctx.arch.smooth_pairs if p.name in self.cfg.pairs]
        pairs = [p for p in pairs if all(c in linears for c in p.consumers)]
        site_of = {c: p.consumers[0] for p in ctx.arch.smooth_pairs for c in p.consumers}
        site_of = {p: site_of[p] if site_of.get(p) in linears else p for p in linears}
        sites = {site: linears[site] for site in site_of.values() if site in linears}
        with quant_disabled(list(linears.values())):
            hessians, means = input_statistics(ctx, sites)
        input_scale: dict[str, torch.Tensor] = {}
        for pair in pairs:
            site = site_of[pair.consumers[0]]
            scale, ratio = self.search(ctx, pair, hessians[site], means[site])
            fold(ctx, pair, scale)
            self.ratios[pair.name], self.scales[pair.name] = ratio, scale.cpu()
            full = expand_kv(scale, ctx.kv_repeat, ctx.head_dim) if pair.kv_groups else scale
            for path in pair.consumers:
                input_scale[path] = full
        for path in input_scale:  # bake() fixed these grids on the weights before the fold
            linears[path].refresh_grid()
        if not self.cfg.clip:
            return
        for path, linear in linears.items():
            if linear.w_spec is None or path in self.cfg.clip_skip:
                continue
            hessian = hessians[site_of[path]]
            if path in input_scale:  # inputs are now x / s
                s = input_scale[path]
                hessian = hessian / (s[:, None] * s[None, :])
            scale, zero = clipped_grid(linear.weight.detach().float(), linear.w_spec, hessian,
                                       self.cfg.clip_grid, self.cfg.clip_max_shrink)
            linear.set_grid(scale.to(linear.weight), zero.to(linear.weight))

    def search(
        self, ctx: BlockContext, pair: SmoothPair, hessian: torch.Tensor, x_mean: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        """The per-channel scale (kv channels for the v→o pair) with the least output error."""
        consumers = [ctx.linear(p) for p in pair.consumers]
        weights = [m.weight.detach().float() for m in consumers]
        w_mean = torch.cat([normalized_magnitude(w, m.w_spec) for w, m in
                            zip(weights, consumers, strict=True)]).mean(0)
        if pair.kv_groups:
            x_mean = group_mean(x_mean, ctx.kv_repeat, ctx.head_dim)
            w_mean = group_mean(w_mean, ctx.kv_repeat, ctx.head_dim)
        best: tuple[float, torch.Tensor, float] | None = None
        for step in range(self.cfg.n_grid):
            ratio = step / self.cfg.n_grid
            scale = x_mean.clamp(min=MIN_SCALE).pow(ratio)
            if self.cfg.duo:
                scale = scale / (w_mean.pow(1 - ratio) + MIN_SCALE)
            scale = scale.clamp(min=MIN_SCALE)
            scale = scale / (scale.max() * scale.min()).sqrt()
            full = expand_kv(scale, ctx.kv_repeat, ctx.head_dim) if pair.kv_groups else scale
            loss = sum(
                output_error(w, m.w_spec, full, hessian)
                for w, m in zip(weights, consumers, strict=True)
            )
            if best is None or loss < best[0]:
                best = (float(loss), scale, ratio)
        assert best is not None
        return best[1], best[2]

    def state(self) -> dict[str, Any]:
        return {"ratios": dict(self.ratios), "scales": dict(self.scales)}


def input_statistics(
    ctx: BlockContext, linears: dict[str, FakeQuantLinear]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Hessians XᵀX/n and per-channel mean |x| of each linear's input, from one block pass."""
    sums = {p: torch.zeros(m.in_features, device=m.weight.device) for p, m in linears.items()}
    counts = dict.fromkeys(linears, 0)
    handles = []
    for path, module in linears.items():
        def hook(m: FakeQuantLinear, inputs: tuple[torch.Tensor, ...], out: Any,
                 path: str = path) -> None:
            x = inputs[0].detach().reshape(-1, m.in_features).float()
            sums[path] += x.abs().sum(0)
            counts[path] += x.shape[0]
        handles.append(module.register_forward_hook(hook))
    try:
        hessians = collect_hessians(ctx, linears)
    finally:
        for handle in handles:
            handle.remove()
    means = {p: sums[p] / max(counts[p], 1) for p in linears}
    return {p: h / 2 for p, h in hessians.items()}, means


def normalized_magnitude(weight: torch.Tensor, spec: QuantSpec | None) -> torch.Tensor:
    """|W| over the max |W| of its quantization group, [rows, cols] (AWQ's weight statistic)."""
    group = -1 if spec is None or spec.group <= 0 else spec.group
    grouped = to_groups(weight.abs(), group, partial=True)
    grouped = grouped / grouped.amax(-1, keepdim=True).clamp(min=1e-12)
    return grouped.reshape(weight.shape[0], -1)[:, : weight.shape[1]]


def group_mean(values: torch.Tensor, repeat: int, head_dim: int) -> torch.Tensor:
    """Per-query-head channels → per-kv channels, by the mean over the heads sharing one."""
    return values.view(-1, repeat, head_dim).mean(dim=1).reshape(-1)


def output_error(
    weight: torch.Tensor, spec: QuantSpec | None, scale: torch.Tensor, hessian: torch.Tensor
) -> torch.Tensor:
    """tr(ΔW H ΔWᵀ) for ΔW = Q(W·s)/s − W (the output error of scaling by s, then quantizing)."""
    if spec is None:
        return torch.zeros(())
    delta = fake_quant(weight * scale[None, :], spec) / scale[None, :] - weight
    return ((delta @ hessian) * delta).sum()


def fold(ctx: BlockContext, pair: SmoothPair, scale: torch.Tensor) -> None:
    """Divide the producer's output by s, multiply the consumers' input columns by s."""
    producer = get_module(ctx.block, pair.producer)
    rows = scale.to(producer.weight)
    if producer.weight.dim() == 1:
        producer.weight.data.div_(rows)
    else:
        producer.weight.data.div_(rows[:, None])
    if getattr(producer, "bias", None) is not None:
        producer.bias.data.div_(rows)
    full = expand_kv(scale, ctx.kv_repeat, ctx.head_dim) if pair.kv_groups else scale
    for path in pair.consumers:
        weight = ctx.linear(path).weight
        weight.data.mul_(full.to(weight)[None, :])


def clipped_grid(
    weight: torch.Tensor, spec: QuantSpec, hessian: torch.Tensor, steps: int, max_shrink: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row group, the range shrink with the least output error Δw H_gg Δwᵀ; grid [r, G, 1]."""
    cols = weight.shape[1]
    grouped = to_groups(weight, spec.group, partial=True)
    n_groups, size = grouped.shape[1], grouped.shape[2]
    padded = torch.zeros(n_groups * size, n_groups * size, device=weight.device)
    padded[:cols, :cols] = hessian
    blocks = torch.stack([padded[g * size:(g + 1) * size, g * size:(g + 1) * size]
                          for g in range(n_groups)])
    valid = (torch.arange(n_groups * size, device=weight.device) < cols).view(n_groups, size)
    lo, hi = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
    best_scale, best_zero = qparams(grouped, spec)
    best_err = torch.full_like(lo, float("inf"))
    for step in range(int(max_shrink * steps) + 1):
        shrink = 1.0 - step / steps
        scale, zero = qparams(grouped, spec, lo * shrink, hi * shrink)
        delta = (fake_quant_grouped(grouped, spec, scale, zero) - grouped) * valid
        err = torch.einsum("rgi,gij,rgj->rg", delta, blocks, delta).unsqueeze(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


def quant_conflict(settings: dict[str, Any], quant: Any, save_model: bool) -> str | None:
    """Why these AWQ settings cannot run with ``quant`` (one line), or None."""
    del save_model
    AWQConfig(**settings)
    if quant.w_bits == FP_BITS:
        return "AWQ searches weight-quantization scales: needs quant.w_bits < 16"
    if quant.w_group == 0 and settings.get("duo", True):
        return "AWQ duo scaling needs per-channel or grouped weights; set awq.duo=false"
    return None
