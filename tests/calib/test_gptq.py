"""GPTQ: lower output error than round-to-nearest, and its weights lie on its own grid."""

from __future__ import annotations

import pytest
import torch

from abqlab.calib.components.gptq import GPTQConfig, gptq_quantize
from abqlab.quant.spec import PER_CHANNEL, PER_TENSOR, QuantSpec

ROWS, COLS, TOKENS = 48, 64, 512


def correlated_inputs(seed: int) -> torch.Tensor:
    """Tokens with correlated features and uneven channel scales (where GPTQ pays off)."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(COLS, COLS, generator=generator) / COLS**0.5
    scales = torch.exp(torch.randn(COLS, generator=generator))
    base = torch.randn(TOKENS, COLS, generator=generator)
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
    "w3-asym-channel": (QuantSpec(3), GPTQConfig()),
    "w4-sym-channel": (QuantSpec(4, sym=True), GPTQConfig()),
    "w3-asym-g16-block32": (QuantSpec(3, group=16), GPTQConfig(block_size=32)),
    "w2-asym-channel-actorder": (QuantSpec(2), GPTQConfig(act_order=True, block_size=16)),
}


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("seed", [0, 1])
def test_gptq_beats_rtn_and_lies_on_its_grid(name: str, seed: int) -> None:
    spec, cfg = SPECS[name]
    x = correlated_inputs(seed)
    weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(100 + seed))
    hessian = 2 * x.T @ x / TOKENS
    quantized, scale, zero = gptq_quantize(weight, hessian, spec, cfg)
    assert quantized.shape == weight.shape
    gptq_error, rtn_error = (
        output_error(x, weight, quantized),
        output_error(x, weight, rtn(weight, spec)),
    )
    assert gptq_error < 0.9 * rtn_error, (gptq_error, rtn_error)

    n_groups = 1 if spec.group == PER_CHANNEL else COLS // spec.group
    assert scale.shape == zero.shape == (ROWS, n_groups, 1)
    codes = quantized.reshape(ROWS, n_groups, -1) / scale + zero
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.round().min() >= spec.qmin and codes.round().max() <= spec.qmax
    if spec.sym:
        assert torch.all(zero == 0)


def test_dead_input_columns_are_zeroed() -> None:
    x = correlated_inputs(2)
    x[:, 5] = 0.0
    weight = torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(3))
    quantized, _, _ = gptq_quantize(weight, 2 * x.T @ x / TOKENS, QuantSpec(4), GPTQConfig())
    assert torch.isfinite(quantized).all()
    assert torch.all(quantized[:, 5] == 0)
    assert output_error(x, weight, quantized) < output_error(x, weight, rtn(weight, QuantSpec(4)))


def test_unsupported_granularities_raise() -> None:
    weight, hessian = torch.randn(4, 8), torch.eye(8)
    with pytest.raises(ValueError, match="per-tensor"):
        gptq_quantize(weight, hessian, QuantSpec(4, group=PER_TENSOR), GPTQConfig())
    with pytest.raises(ValueError, match="act_order"):
        gptq_quantize(weight, hessian, QuantSpec(4, group=4), GPTQConfig(act_order=True))
