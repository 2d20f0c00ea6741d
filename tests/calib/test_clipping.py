"""Learnable weight clipping: σ(init)·range at start, gradients reach the bounds, baked grid."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from calib_util import BlockCase, block_case, tiny_llama

from abqlab.calib.components import build_component
from abqlab.calib.train import forward
from abqlab.config import QuantConfig

QUANTS = {
    "w4-asym-channel": QuantConfig(name="w4", w_bits=4),
    "w3-sym-g16": QuantConfig(name="w3g16", w_bits=3, w_sym=True, w_group=16),
}


def grid(lo: torch.Tensor, hi: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, ...]:
    """Scale, zero, qmin, qmax of a plain integer grid over [lo, hi] (written out here)."""
    if sym:
        amax = torch.maximum(lo.abs(), hi.abs())
        qmax = 2 ** (bits - 1) - 1
        return amax / qmax, torch.zeros_like(amax), torch.tensor(-qmax - 1.0), torch.tensor(qmax)
    scale = (hi - lo) / (2**bits - 1)
    return scale, torch.round(-lo / scale), torch.tensor(0.0), torch.tensor(2.0**bits - 1)


def groups(weight: torch.Tensor, group: int) -> torch.Tensor:
    size = weight.shape[1] if group == -1 else group
    return weight.reshape(weight.shape[0], -1, size)


@pytest.fixture(params=list(QUANTS))
def setup(request: pytest.FixtureRequest) -> tuple[BlockCase, QuantConfig]:
    return block_case(tiny_llama(seed=6), index=0), QUANTS[request.param]


def test_initial_bounds_are_sigmoid_init_times_range(setup: tuple[BlockCase, QuantConfig]) -> None:
    case, quant = setup
    ctx = case.context(quant)
    component = build_component("clipping", {"init": 4.0})
    params = component.attach(ctx)
    assert len(params) == 2 * len(ctx.linears())
    factor = 1 / (1 + math.exp(-4.0))
    for path, linear in ctx.linears().items():
        low, up = component.bounds[path]
        w = groups(linear.weight.detach(), quant.w_group)
        assert low.shape == up.shape == (w.shape[0], w.shape[1], 1)
        assert torch.all(low == 4.0) and torch.all(up == 4.0)
        lo, hi = linear.clip(w)
        assert torch.allclose(lo, factor * w.amin(-1, keepdim=True))
        assert torch.allclose(hi, factor * w.amax(-1, keepdim=True))
        scale, zero = linear.weight_qparams(w)
        ref_scale, ref_zero, _, _ = grid(lo, hi, quant.w_bits, quant.w_sym)
        assert torch.allclose(scale, ref_scale) and torch.equal(zero, ref_zero)


def test_gradients_reach_every_bound(setup: tuple[BlockCase, QuantConfig]) -> None:
    case, quant = setup
    target = case.run(case.float_block)
    ctx = case.context(quant)
    component = build_component("clipping", {})
    component.attach(ctx)
    F.mse_loss(forward(case.block, case.x, case.kwargs), target).backward()
    for path, (low, up) in component.bounds.items():
        for bound in (low, up):
            assert bound.grad is not None, path
            assert torch.isfinite(bound.grad).all(), path
            assert bound.grad.abs().sum() > 0, path


def test_bake_fixes_the_clipped_grid(setup: tuple[BlockCase, QuantConfig]) -> None:
    case, quant = setup
    ctx = case.context(quant)
    component = build_component("clipping", {})
    component.attach(ctx)
    generator = torch.Generator().manual_seed(0)
    for low, up in component.bounds.values():  # learned bounds between σ(-1) and σ(3)
        low.data.uniform_(-1, 3, generator=generator)
        up.data.uniform_(-1, 3, generator=generator)
    bounds = {
        p: (torch.sigmoid(lo.detach()), torch.sigmoid(u.detach()))
        for p, (lo, u) in component.bounds.items()
    }
    before = case.run()
    component.bake(ctx)
    for linear in ctx.linears().values():
        linear.bake()
    for path, linear in ctx.linears().items():
        assert linear.clip is None
        w = groups(linear.weight.detach(), quant.w_group)
        lo = bounds[path][0] * w.amin(-1, keepdim=True)
        hi = bounds[path][1] * w.amax(-1, keepdim=True)
        scale, zero, qmin, qmax = grid(lo, hi, quant.w_bits, quant.w_sym)
        assert torch.allclose(linear.w_scale, scale, rtol=1e-6) and torch.equal(linear.w_zero, zero)
        expected = (torch.clamp(torch.round(w / scale) + zero, qmin, qmax) - zero) * scale
        actual = linear.quantized_weight(linear.weight.detach())
        assert torch.allclose(actual, expected.reshape(actual.shape), atol=1e-6), path
        clipped = (w < lo - 1e-6) | (w > hi + 1e-6)
        assert clipped.any(), path  # the bounds really clip something
    assert torch.allclose(case.run(), before, atol=1e-5)
