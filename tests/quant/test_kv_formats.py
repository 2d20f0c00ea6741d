"""KV-cache quantization in the float formats: per token and head, or one grid per head."""

from __future__ import annotations

import torch

from abqlab.quant.attention import quantize_heads
from abqlab.quant.spec import QuantSpec

FP8 = QuantSpec(8, True, -1, fmt="fp8_e4m3", activation=True)


def keys(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    spread = torch.exp(torch.randn(2, 3, 7, 1, generator=gen))
    return torch.randn(2, 3, 7, 16, generator=gen) * spread


def fp8_reference(x: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    scale = amax / 448.0
    return (x / scale).to(torch.float8_e4m3fn).float() * scale


def test_fp8_per_token_is_torchs_cast_with_one_scale_per_token_and_head() -> None:
    x = keys()
    expected = fp8_reference(x, x.abs().amax(-1, keepdim=True))
    assert torch.equal(quantize_heads(x, FP8), expected)


def test_fp8_per_head_uses_one_scale_for_the_whole_window() -> None:
    x = keys(1)
    expected = fp8_reference(x, x.abs().amax(dim=(-2, -1), keepdim=True))
    got = quantize_heads(x, FP8, per_head=True)
    assert torch.equal(got, expected)
    assert not torch.equal(got, quantize_heads(x, FP8))


def test_int_per_head_shares_the_grid_across_tokens() -> None:
    x = keys(2)
    got = quantize_heads(x, QuantSpec(4, True, -1, activation=True), per_head=True)
    steps = got / (x.abs().amax(dim=(-2, -1), keepdim=True) / 7)
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert int(steps.abs().amax()) == 7
