"""Smoothing folds into the neighbouring weights without changing the float function (GQA too)."""

from __future__ import annotations

import math

import pytest
import torch
from calib_util import (
    FLOAT,
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    BlockCase,
    block_case,
    randomize_norms,
    tiny_llama,
)
from transformers.models.llama.modeling_llama import repeat_kv

import abqlab.calib.components.smoothing as smoothing
from abqlab.calib.components import build_component
from abqlab.config import QuantConfig
from abqlab.models.arch import get_module

REPEAT = HEADS // KV_HEADS
PAIRS = ["qkv", "vo", "gate_up", "up_down"]


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(actual, expected, rtol=1e-5, atol=1e-4)


@pytest.fixture(params=[0, 1], ids=["block0", "block1"])
def case(request: pytest.FixtureRequest) -> BlockCase:
    loaded = tiny_llama(seed=3)
    randomize_norms(loaded.model, seed=4)
    return block_case(loaded, request.param)


def random_scales(component: smoothing.Smoothing, seed: int = 0) -> None:
    """Log-normal scales spanning ~ e^±2: far from the closed-form init and from 1."""
    generator = torch.Generator().manual_seed(seed)
    for scale in component.params.values():
        scale.set(torch.exp(torch.randn(scale.theta.shape, generator=generator)))


def per_query_channel(kv_scale: torch.Tensor) -> torch.Tensor:
    """Query-head channel h·d + i reads kv head h // REPEAT (transformers' repeat_kv)."""
    channel = torch.arange(HEADS * HEAD_DIM)
    head, within = channel // HEAD_DIM, channel % HEAD_DIM
    return kv_scale[(head // REPEAT) * HEAD_DIM + within]


def test_expand_kv_matches_repeat_kv() -> None:
    kv_scale = torch.arange(KV_HEADS * HEAD_DIM, dtype=torch.float32) + 1
    states = kv_scale.view(1, KV_HEADS, 1, HEAD_DIM)  # [batch, kv_heads, seq, head_dim]
    expected = repeat_kv(states, REPEAT).reshape(-1)
    assert torch.equal(smoothing.expand_kv(kv_scale, REPEAT, HEAD_DIM), expected)
    assert torch.equal(per_query_channel(kv_scale), expected)
    assert torch.equal(smoothing.group_max(expected, REPEAT, HEAD_DIM), kv_scale)


def test_random_scales_keep_block_output_before_and_after_bake(case: BlockCase) -> None:
    expected = case.run(case.float_block)
    ctx = case.context(FLOAT)
    before = {
        p: get_module(case.block, p).weight.detach().clone() for p in case.loaded.arch.linears
    }
    norms = {
        n: get_module(case.block, n).weight.detach().clone()
        for n in ("input_layernorm", "post_attention_layernorm")
    }
    component = build_component("smoothing", {"pairs": PAIRS})
    params = component.attach(ctx)
    assert [tuple(p.shape) for p in params] == [(64,), (KV_HEADS * HEAD_DIM,), (64,), (128,)]
    assert close(case.run(), expected)  # closed-form init
    random_scales(component)
    scales = {name: s.detach().clone() for name, s in component.scales.items()}
    assert close(case.run(), expected)  # random learned scales, still unbaked
    component.bake(ctx)
    for linear in ctx.linears().values():
        linear.bake()
    assert close(case.run(), expected)
    assert all(not m.weight_transforms for m in ctx.linears().values())
    # the scales were folded where they should be (computed here, not by the component)
    weight = {p: get_module(case.block, p).weight for p in case.loaded.arch.linears}
    s = scales
    assert close(
        get_module(case.block, "input_layernorm").weight, norms["input_layernorm"] / s["qkv"]
    )
    assert close(
        get_module(case.block, "post_attention_layernorm").weight,
        norms["post_attention_layernorm"] / s["gate_up"],
    )
    for path in ("self_attn.q_proj", "self_attn.k_proj"):
        assert close(weight[path], before[path] * s["qkv"])
    assert close(
        weight["self_attn.v_proj"], before["self_attn.v_proj"] * s["qkv"] / s["vo"][:, None]
    )
    assert close(
        weight["self_attn.o_proj"], before["self_attn.o_proj"] * per_query_channel(s["vo"])
    )
    assert close(weight["mlp.gate_proj"], before["mlp.gate_proj"] * s["gate_up"])
    assert close(
        weight["mlp.up_proj"], before["mlp.up_proj"] * s["gate_up"] / s["up_down"][:, None]
    )
    assert close(weight["mlp.down_proj"], before["mlp.down_proj"] * s["up_down"])


def kv_head_scale(values: tuple[float, ...]) -> torch.Tensor:
    """A v→o scale that is constant within each kv head and different across them."""
    return torch.cat([torch.full((HEAD_DIM,), v) for v in values])


def vo_output(case: BlockCase, scale: torch.Tensor) -> torch.Tensor:
    ctx = case.context(FLOAT)
    component = build_component("smoothing", {"pairs": ["vo"]})
    component.attach(ctx)
    component.params["vo"].set(scale)
    out = case.run()
    component.bake(ctx)
    for linear in ctx.linears().values():
        linear.bake()
    assert close(case.run(), out)
    return out


def test_vo_scale_per_kv_head_keeps_function(case: BlockCase) -> None:
    expected = case.run(case.float_block)
    assert close(vo_output(case, kv_head_scale((0.25, 4.0))), expected)


def test_vo_check_detects_a_wrong_kv_head_order(
    case: BlockCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous test can fail: tiling the kv heads (h % kv_heads) instead of repeat_kv's
    h // repeat breaks the function by far more than the tolerance."""
    expected = case.run(case.float_block)

    def tiled(scale: torch.Tensor, repeat: int, head_dim: int) -> torch.Tensor:
        return scale.repeat(repeat)

    monkeypatch.setattr(smoothing, "expand_kv", tiled)
    out = vo_output(case, kv_head_scale((0.25, 4.0)))
    assert (out - expected).abs().max() > 100 * 1e-4


def test_closed_form_init_and_smoothquant_is_fixed(case: BlockCase) -> None:
    ctx = case.context(FLOAT)
    component = build_component(
        "smoothing", {"alpha": 0.3, "learnable": False, "init": "closed_form"}
    )
    assert component.attach(ctx) == []
    act = ctx.stats["self_attn.q_proj"]
    w = torch.stack(
        [get_module(case.block, f"self_attn.{p}_proj").weight.abs().amax(0) for p in "qkv"]
    ).amax(0)
    assert close(component.scales["qkv"], act.pow(0.3) / w.pow(0.7))
    act_o = ctx.stats["self_attn.o_proj"].view(KV_HEADS, REPEAT, HEAD_DIM).amax(1).reshape(-1)
    w_o = get_module(case.block, "self_attn.o_proj").weight.abs().amax(0)
    w_o = w_o.view(KV_HEADS, REPEAT, HEAD_DIM).amax(1).reshape(-1)
    assert close(component.scales["vo"], act_o.pow(0.3) / w_o.pow(0.7))
    assert not any(s.requires_grad for s in component.scales.values())


@pytest.mark.parametrize("param", ["log", "linear"])
def test_scale_parameter_value_and_set(param: str) -> None:
    init = torch.tensor([0.02, 0.5, 3.0])
    scale = smoothing.ScaleParameter(init, param, learnable=True)
    assert torch.allclose(scale(), init)
    scale.set(torch.tensor([1.0, 2.0, 4.0]))
    assert torch.allclose(scale(), torch.tensor([1.0, 2.0, 4.0]))
    stored = init.log() if param == "log" else init
    assert torch.allclose(smoothing.ScaleParameter(init, param, True).theta, stored)


def adam_step(param: str, lr: float) -> torch.Tensor:
    """The scales after one Adam step that pushes every channel down."""
    scale = smoothing.ScaleParameter(torch.tensor([0.02, 0.5, 3.0]), param, learnable=True)
    optimizer = torch.optim.Adam([scale.theta], lr=lr)
    scale().sum().backward()
    optimizer.step()
    return scale().detach()


def test_log_scales_move_by_the_same_factor_and_stay_positive() -> None:
    """The issue-8 cause: a fixed-lr step of a linear scale takes a small channel through zero
    (clamped to MIN_SCALE, its activation divided by 1e-5); in log space every channel moves by
    the same factor exp(-lr)."""
    before = torch.tensor([0.02, 0.5, 3.0])
    linear = adam_step("linear", 0.05)
    assert linear[0] == smoothing.MIN_SCALE
    assert torch.allclose(linear[1:], before[1:] - 0.05, atol=1e-5)
    log = adam_step("log", 0.05)
    assert torch.allclose(log / before, torch.full((3,), math.exp(-0.05)), rtol=1e-4)


def test_unknown_parametrisation_is_refused() -> None:
    with pytest.raises(ValueError, match="smoothing.param=exp: allowed: log, linear"):
        smoothing.ScaleParameter(torch.ones(2), "exp", learnable=True)


@pytest.mark.parametrize(("a_bits", "expected"), [(16, "identity"), (8, "closed_form")])
def test_auto_init_is_identity_for_weight_only(case: BlockCase, a_bits: int, expected: str) -> None:
    ctx = case.context(QuantConfig(name="q", w_bits=4, a_bits=a_bits))
    component = build_component("smoothing", {"init": "auto"})
    component.attach(ctx)
    pair = ctx.arch.smooth_pairs[0]
    assert component.init_kind(ctx, pair) == expected
    is_one = all(bool(torch.all(s == 1.0)) for s in component.scales.values())
    assert is_one == (expected == "identity")
