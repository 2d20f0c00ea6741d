"""AWQ: scales fold exactly (float function unchanged), the search never loses to no scaling on
its own objective, clipping lowers the layer error, and bad settings fail before loading."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from calib_util import block_case, randomize_norms, tiny_llama

from abqlab.calib.components.awq import AWQ, AWQConfig, clipped_grid, output_error
from abqlab.calib.components.gptq import GPTQ, GPTQConfig, quant_disabled
from abqlab.config import QuantConfig
from abqlab.quant.quantizer import fake_quant, fake_quant_grouped, qparams, to_groups
from abqlab.quant.spec import QuantSpec
from abqlab.validate import ConfigError, check_run

GROUPS = {"channel": (-1, False), "g16": (16, False), "g48-partial": (48, True)}


def awq_case(group: int, partial: bool, seed: int = 0) -> tuple[Any, Any, torch.Tensor]:
    loaded = tiny_llama(seed)
    randomize_norms(loaded.model, seed + 1)
    case = block_case(loaded, 0, n=4, seqlen=32)
    reference = case.run(case.float_block)
    quant = QuantConfig(name="w3", w_bits=3, w_group=group, w_partial_group=partial)
    return case, case.context(quant), reference


@pytest.mark.parametrize("granularity", list(GROUPS))
def test_awq_scales_fold_exactly(granularity: str) -> None:
    case, ctx, reference = awq_case(*GROUPS[granularity])
    component = AWQ(AWQConfig(clip=False))
    component.bake(ctx)
    assert set(component.ratios) == {"qkv", "vo", "gate_up", "up_down"}
    scales = component.state()["scales"]
    assert scales["vo"].numel() == 32  # one scale per kv channel (2 kv heads × 16), GQA
    moved = [name for name, s in scales.items() if (s - 1).abs().max() > 1e-3]
    assert moved, "every pair kept s = 1: the fold below would test nothing"
    with quant_disabled(list(ctx.linears().values())):
        out = case.run()
    relative = ((out - reference).norm() / reference.norm()).item()
    assert relative < 1e-5, relative


@pytest.mark.parametrize("granularity", ["channel", "g16"])
def test_awq_grids_follow_the_folded_weights(granularity: str) -> None:
    """Without clipping every linear ends on the min/max grid of its scaled weight, not the grid
    bake() fixed before the fold (that stale grid gave the full model 46 ppl at W4 g64, far
    worse than RTN)."""
    case, ctx, _ = awq_case(*GROUPS[granularity])
    AWQ(AWQConfig(clip=False)).bake(ctx)
    for path, linear in ctx.linears().items():
        weight = linear.weight.detach()
        expect = fake_quant(weight, linear.w_spec)
        assert torch.allclose(linear.quantized_weight(weight), expect, atol=1e-6), path


def test_awq_search_never_loses_to_no_scaling_on_its_objective() -> None:
    case, ctx, _ = awq_case(16, False, seed=1)
    pair = next(p for p in ctx.arch.smooth_pairs if p.name == "gate_up")
    channel = torch.ones(64)
    channel[[3, 17, 40, 58]] = 30.0  # a few outlier input channels, as in LLM activations
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(0)) * channel
    hessian = x.T @ x / x.shape[0]
    component = AWQ(AWQConfig())
    scale, ratio = component.search(ctx, pair, hessian, x.abs().mean(0))
    weights = [ctx.linear(p).weight.detach().float() for p in pair.consumers]
    spec = ctx.linear(pair.consumers[0]).w_spec

    def loss(s: torch.Tensor) -> float:
        return sum(float(output_error(w, spec, s, hessian)) for w in weights)

    assert loss(scale) <= loss(torch.ones(64)) * (1 + 1e-6)
    assert ratio > 0 and loss(scale) < 0.95 * loss(torch.ones(64))  # outlier channels: it helps


def test_output_error_is_the_mean_squared_output_error() -> None:
    generator = torch.Generator().manual_seed(3)
    x, weight = torch.randn(100, 24, generator=generator), torch.randn(8, 24, generator=generator)
    scale, spec = torch.rand(24, generator=generator) + 0.5, QuantSpec(3, group=8)
    effective = fake_quant(weight * scale, spec) / scale
    direct = ((x @ effective.T - x @ weight.T) ** 2).sum() / x.shape[0]
    assert torch.allclose(output_error(weight, spec, scale, x.T @ x / x.shape[0]), direct,
                          rtol=1e-4)


@pytest.mark.parametrize("spec", [QuantSpec(3, group=16), QuantSpec(4, sym=True),
                                  QuantSpec(3, group=24, partial_group=True)])
def test_clipping_lowers_each_groups_output_error(spec: QuantSpec) -> None:
    totals = {"clipped": 0.0, "plain": 0.0}
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        heavy = torch.rand(16, 64, generator=generator).clamp(min=0.05).sqrt()
        weight = torch.randn(16, 64, generator=generator) / heavy  # heavy tails: clipping pays
        x = torch.randn(512, 64, generator=generator)
        hessian = x.T @ x / 512
        scale, zero = clipped_grid(weight, spec, hessian, 20, 0.5)
        grouped = to_groups(weight, spec.group, spec.partial_group)
        clipped = fake_quant_grouped(grouped, spec, scale, zero).reshape(16, -1)[:, :64]
        for name, q in (("clipped", clipped), ("plain", fake_quant(weight, spec))):
            totals[name] += float(((q - weight) @ hessian * (q - weight)).sum())
        minmax_scale, _ = qparams(grouped, spec)
        assert torch.all(scale <= minmax_scale * (1 + 1e-6))  # only ever shrinks the range
    assert totals["clipped"] < 0.95 * totals["plain"], totals


def test_awq_with_clipping_beats_rtn_on_the_block() -> None:
    errors = {}
    for clip in (None, True):
        case, ctx, reference = awq_case(-1, False, seed=2)
        for linear in ctx.linears().values():
            linear.bake()
        if clip:
            AWQ(AWQConfig(clip=True)).bake(ctx)
        errors[clip] = torch.mean((case.run() - reference) ** 2).item()
    assert errors[True] < 0.9 * errors[None], errors


@pytest.mark.parametrize("granularity", ["g16", "g48-partial"])
def test_awq_then_gptq_composes_and_beats_rtn_on_the_block(granularity: str) -> None:
    """calib=awq_gptq's order: AWQ folds its scales (no clipping), then GPTQ picks its grid."""
    errors = {}
    for method in ("rtn", "awq_gptq"):
        case, ctx, reference = awq_case(*GROUPS[granularity], seed=2)
        for linear in ctx.linears().values():
            linear.bake()
        if method == "awq_gptq":
            awq = AWQ(AWQConfig(clip=False))
            awq.bake(ctx)
            assert any((s - 1).abs().max() > 1e-3 for s in awq.state()["scales"].values())
            gptq = GPTQ(GPTQConfig())
            gptq.bake(ctx)
            assert set(gptq.state()) == set(ctx.linears())
        errors[method] = torch.mean((case.run() - reference) ** 2).item()
    assert errors["awq_gptq"] < 0.9 * errors["rtn"], errors


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("calib=awq", "quant=w4a16", "quant.w_group=0"), "duo"),
        (("calib=awq", "quant=fp"), "w_bits"),
        (("calib=awq", "+calib.components.awq.pairs=[qkv,bogus]"), "pairs"),
        (("calib=awq", "calib.components.awq.n_grid=0"), "n_grid"),
        (("calib=gptq", "quant=w4a16", "quant.w_group=0"), "per-tensor"),
        (("calib=gptq", "quant=w3a16", "quant.w_group=64", "calib.save_model=true",
          "calib.components.gptq.groups=dynamic", "calib.components.gptq.act_order=true"),
         "g_idx"),
        (("calib=gptq", "calib.components.gptq.hessian=fp"), "hessian"),
        (("calib=awq_gptq", "calib.components.gptq.grid=percentile"), "grid"),
    ],
)
def test_bad_combinations_fail_before_loading(
    composer: Callable[..., Any], overrides: tuple[str, ...], match: str
) -> None:
    cfg = composer("model=smollm2-2layer", "logger=none", *overrides)
    with pytest.raises(ConfigError, match=match) as info:
        check_run(cfg)
    assert "\n" not in str(info.value)
