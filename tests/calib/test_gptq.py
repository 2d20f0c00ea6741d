"""GPTQ's solver: lower output error than round-to-nearest, weights on its own grid, static
act-order equal to a slow reference, dynamic g_idx groups reproducible by the fake-quant linear."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from abqlab.calib.components.gptq import GPTQConfig, gptq_quantize
from abqlab.quant.export import export_linear
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.spec import PER_CHANNEL, PER_TENSOR, QuantSpec

ROWS, COLS, TOKENS = 48, 64, 512


def correlated_inputs(seed: int, cols: int = COLS, tokens: int = TOKENS) -> torch.Tensor:
    """Tokens with correlated features and uneven channel scales (where GPTQ pays off)."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=generator) / cols**0.5
    scales = torch.exp(torch.randn(cols, generator=generator))
    base = torch.randn(tokens, cols, generator=generator)
    return (base + 0.8 * base @ mix) * scales


def rtn(weight: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Round-to-nearest with min/max per row group, written out independently."""
    size = weight.shape[1] if spec.group == PER_CHANNEL else spec.group
    w = weight.reshape(weight.shape[0], -1, size)
    lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    if spec.sym:
        qmax = 2 ** (spec.bits - 1) - 1
        scale, zero, qmin = (
            torch.maximum(lo.abs(), hi.abs()) / qmax,
            torch.zeros_like(lo),
            -qmax - 1,
        )
    else:
        qmin, qmax = 0, 2**spec.bits - 1
        scale = (hi - lo) / qmax
        zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(w / scale) + zero, qmin, qmax)
    return ((q - zero) * scale).reshape(weight.shape)


def output_error(x: torch.Tensor, weight: torch.Tensor, quantized: torch.Tensor) -> float:
    return torch.linalg.norm(x @ weight.T - x @ quantized.T).item()


SPECS = {
    "w3-asym-channel": QuantSpec(3),
    "w4-sym-channel": QuantSpec(4, sym=True),
    "w3-asym-g16": QuantSpec(3, group=16),
    "w2-asym-channel": QuantSpec(2),
}
OPTIONS = {  # act_order, groups, grid, block_size
    "plain-dynamic": (False, "dynamic", "minmax", 32),
    "plain-static": (False, "static", "minmax", 128),
    "actorder-static": (True, "static", "minmax", 16),
    "actorder-dynamic": (True, "dynamic", "minmax", 32),
    "actorder-static-mse": (True, "static", "mse", 128),
}


def codes_on_grid(result, spec: QuantSpec) -> torch.Tensor:  # noqa: ANN001 - GPTQResult
    """(W / scale + zero) per column, using g_idx when the groups are not consecutive."""
    rows, cols = result.weight.shape
    size = cols if spec.group == PER_CHANNEL else spec.group
    group = result.g_idx.long() if result.g_idx is not None else torch.arange(cols) // size
    return result.weight / result.scale[:, group, 0] + result.zero[:, group, 0]


@pytest.mark.parametrize(("name", "option"), list(itertools.product(SPECS, OPTIONS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_gptq_beats_rtn_and_lies_on_its_grid(name: str, option: str, seed: int) -> None:
    spec = SPECS[name]
    act_order, groups, grid, block = OPTIONS[option]
    cfg = GPTQConfig(act_order=act_order, groups=groups, grid=grid, block_size=block)
    x = correlated_inputs(seed)
    weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(100 + seed))
    result = gptq_quantize(weight, 2 * x.T @ x / TOKENS, spec, cfg)
    assert result.weight.shape == weight.shape
    gptq_error = output_error(x, weight, result.weight)
    rtn_error = output_error(x, weight, rtn(weight, spec))
    assert gptq_error < 0.9 * rtn_error, (gptq_error, rtn_error)

    n_groups = 1 if spec.group == PER_CHANNEL else COLS // spec.group
    assert result.scale.shape == result.zero.shape == (ROWS, n_groups, 1)
    codes = codes_on_grid(result, spec)
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.round().min() >= spec.qmin and codes.round().max() <= spec.qmax
    if spec.sym:
        assert torch.all(result.zero == 0)
    expects_g_idx = groups == "dynamic" and act_order and spec.group > 0
    assert (result.g_idx is not None) == expects_g_idx


def reference_gptq_static(
    weight: torch.Tensor, hessian: torch.Tensor, spec: QuantSpec, damp: float
) -> torch.Tensor:
    """Slow OBQ-style GPTQ in float64: explicit inverse Hessian, one column at a time, the
    column's row removed from the inverse after each step; grids from the original weights on
    the original column groups; columns by decreasing Hessian diagonal."""
    w = weight.double().clone()
    h = hessian.double().clone()
    h += damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype)
    grid_w = w.reshape(w.shape[0], -1, spec.group)
    lo, hi = grid_w.amin(-1), grid_w.amax(-1)
    levels = 2**spec.bits - 1
    scale = (hi - lo) / levels
    zero = torch.round(-lo / scale)
    hinv = torch.linalg.inv(h)
    out = torch.zeros_like(w)
    for col in torch.argsort(hessian.diagonal(), descending=True).tolist():
        g = col // spec.group
        q = (torch.clamp(torch.round(w[:, col] / scale[:, g]) + zero[:, g], 0, levels)
             - zero[:, g]) * scale[:, g]
        out[:, col] = q
        err = (w[:, col] - q) / hinv[col, col]
        w -= err[:, None] * hinv[col][None, :]
        hinv = hinv - hinv[:, col : col + 1] @ hinv[col : col + 1, :] / hinv[col, col]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_static_act_order_with_groups_equals_slow_reference(seed: int) -> None:
    rows, cols, group = 12, 40, 8
    x = correlated_inputs(seed, cols, 200).double()
    weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)).double()
    hessian = 2 * x.T @ x / 200
    spec = QuantSpec(3, group=group)
    cfg = GPTQConfig(act_order=True, groups="static", grid="minmax", block_size=16)
    ours = gptq_quantize(weight, hessian, spec, cfg).weight
    reference = reference_gptq_static(weight, hessian, spec, cfg.damp)
    assert torch.argsort(hessian.diagonal()).tolist() != list(range(cols))  # order matters
    assert torch.allclose(ours, reference, rtol=0, atol=1e-9), (ours - reference).abs().max()


def test_dynamic_groups_reproduced_by_the_fake_quant_linear_and_refused_by_export() -> None:
    x = correlated_inputs(3)
    weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(4))
    spec = QuantSpec(3, group=16)
    cfg = GPTQConfig(act_order=True, groups="dynamic")
    result = gptq_quantize(weight, 2 * x.T @ x / TOKENS, spec, cfg)
    assert result.g_idx is not None and sorted(result.g_idx.bincount().tolist()) == [16] * 4
    assert result.g_idx.tolist() != (torch.arange(COLS) // 16).tolist()
    linear = FakeQuantLinear(nn.Linear(COLS, ROWS, bias=False), spec, None, "layer")
    linear.weight.data.copy_(result.weight)
    linear.set_grid(result.scale, result.zero, result.g_idx)
    linear.freeze()
    assert torch.allclose(linear.frozen_weight, result.weight, atol=1e-6)
    with pytest.raises(ValueError, match="g_idx"):
        export_linear(linear)


def test_mse_grid_lowers_error_at_three_bits() -> None:
    errors = {}
    for grid in ("minmax", "mse"):
        total = 0.0
        for seed in range(3):
            x = correlated_inputs(seed)
            weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(7 + seed))
            cfg = GPTQConfig(act_order=True, grid=grid)
            result = gptq_quantize(weight, 2 * x.T @ x / TOKENS, QuantSpec(3, group=16), cfg)
            total += output_error(x, weight, result.weight)
        errors[grid] = total
    assert errors["mse"] < errors["minmax"], errors


def test_partial_last_group() -> None:
    x = correlated_inputs(5)
    weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(5))
    spec = QuantSpec(3, group=24, partial_group=True)  # 64 = 24 + 24 + 16
    for groups in ("static", "dynamic"):
        result = gptq_quantize(weight, 2 * x.T @ x / TOKENS, spec, GPTQConfig(groups=groups))
        assert result.scale.shape == (ROWS, 3, 1)
        linear = FakeQuantLinear(nn.Linear(COLS, ROWS, bias=False), spec, None, "layer")
        linear.weight.data.copy_(result.weight)
        linear.set_grid(result.scale, result.zero, result.g_idx)
        linear.freeze()
        assert torch.allclose(linear.frozen_weight, result.weight, atol=1e-6)


def test_dead_input_columns_are_zeroed() -> None:
    x = correlated_inputs(2)
    x[:, 5] = 0.0
    weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(3))
    quantized = gptq_quantize(weight, 2 * x.T @ x / TOKENS, QuantSpec(4), GPTQConfig()).weight
    assert torch.isfinite(quantized).all()
    assert torch.all(quantized[:, 5] == 0)
    assert output_error(x, weight, quantized) < output_error(x, weight, rtn(weight, QuantSpec(4)))


def test_bad_settings_raise_one_line() -> None:
    weight, hessian = torch.randn(4, 8), torch.eye(8)
    with pytest.raises(ValueError, match="per-tensor"):
        gptq_quantize(weight, hessian, QuantSpec(4, group=PER_TENSOR), GPTQConfig())
    for bad in ({"groups": "g_idx"}, {"grid": "percentile"}, {"hessian": "fp"}, {"damp": 0.0},
                {"block_size": 0}, {"mse_max_shrink": 1.0}):
        with pytest.raises(ValueError, match="gptq") as info:
            GPTQConfig(**bad)
        assert "\n" not in str(info.value)
