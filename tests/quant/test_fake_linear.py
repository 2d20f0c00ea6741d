"""FakeQuantLinear against hand computation; bake/freeze keep outputs; export reproduces W."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from quant_ref import chunks, ref_fake_quant_rows
from torch import nn

from abqlab.quant.export import export_linear
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.quantizer import dequantize_codes
from abqlab.quant.spec import QuantSpec


def linear_with(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def test_tiny_layer_matches_hand_computation() -> None:
    weight = torch.tensor([[0.0, 0.3, -0.6, 0.9], [0.2, -0.1, 0.4, -0.5]])
    bias = torch.tensor([0.1, -0.2])
    x = torch.tensor([[[1.0, -2.0, 0.5, 3.0], [0.1, 0.2, 0.3, 0.4]]])
    layer = FakeQuantLinear(linear_with(weight, bias), QuantSpec(2), QuantSpec(3), "t")
    # W2 asym per row. Row 0: scale 1.5/3 = 0.5, zero round(1.2) = 1, codes 1 2 0 3.
    # Row 1: scale 0.9/3 = 0.3, zero round(1.67) = 2, codes 3 2 3 0.
    w_hat = torch.tensor([[0.0, 0.5, -0.5, 1.0], [0.3, 0.0, 0.3, -0.6]])
    # A3 asym per token. Token 0: scale 5/7, zero round(2.8) = 3, codes 4 0 4 7.
    # Token 1: scale 0.3/7, zero round(-2.33) = -2, codes 0 3 5 7 → (code + 2) · scale.
    x_hat = torch.tensor(
        [[[1.0, -3.0, 1.0, 4.0], [2 * 0.3 / 7, 5 * 0.3 / 7, 7 * 0.3 / 7, 9 * 0.3 / 7]]]
    )
    x_hat[0, 0] *= 5 / 7
    assert torch.allclose(layer.quantized_weight(layer.weight), w_hat, atol=1e-6)
    expected = x_hat @ w_hat.T + bias
    assert torch.allclose(layer(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "w_sym"), [(4, 8, False), (3, 4, True), (2, 6, False)]
)
def test_random_layer_matches_reference(w_bits: int, a_bits: int, w_sym: bool) -> None:
    torch.manual_seed(w_bits)
    lin = nn.Linear(48, 24)
    layer = FakeQuantLinear(lin, QuantSpec(w_bits, w_sym, 16), QuantSpec(a_bits), "r")
    x = torch.randn(2, 7, 48)
    w_hat = torch.cat(
        [ref_fake_quant_rows(c, w_bits, w_sym) for c in chunks(lin.weight.detach(), 16)], dim=1
    )
    x_hat = ref_fake_quant_rows(x.reshape(-1, 48), a_bits, False).reshape(x.shape)
    expected = F.linear(x_hat, w_hat, lin.bias.detach())
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_disabled_or_float_specs_are_plain_linear() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    x = torch.randn(3, 16)
    plain = lin(x)
    assert torch.equal(FakeQuantLinear(lin, None, None)(x), plain)
    layer = FakeQuantLinear(lin, QuantSpec(2), QuantSpec(2))
    assert not torch.allclose(layer(x), plain, atol=1e-3)
    layer.quant_enabled = False
    assert torch.equal(layer(x), plain)


def test_non_dividing_group_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        FakeQuantLinear(nn.Linear(40, 8), QuantSpec(4, group=16), None)
    FakeQuantLinear(nn.Linear(40, 8), QuantSpec(4, group=16, partial_group=True), None)


def calibrated_layer(
    spec: QuantSpec, in_features: int = 48, bias_shift: float = 0.25
) -> FakeQuantLinear:
    """A layer with a smoothing-like transform (column scale, bias shift) and shrunk clipping."""
    torch.manual_seed(7)
    layer = FakeQuantLinear(nn.Linear(in_features, 12), spec, QuantSpec(8))
    col = torch.rand(in_features) + 0.5
    layer.weight_transforms.append(lambda w, b: (w * col, b))
    if bias_shift:
        layer.weight_transforms.append(lambda w, b: (w, b + bias_shift))
    layer.clip = lambda g: (0.8 * g.amin(-1, keepdim=True), 0.6 * g.amax(-1, keepdim=True))
    return layer


SPECS = [
    QuantSpec(4, False, -1),
    QuantSpec(3, True, -1),
    QuantSpec(2, False, 16),
    QuantSpec(2, True, 16, bit_balance=True),
    QuantSpec(3, False, 20, partial_group=True),
]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_bake_keeps_outputs(spec: QuantSpec) -> None:
    layer = calibrated_layer(spec)
    x = torch.randn(5, 48)
    before = layer(x)
    layer.bake()
    assert layer.weight_transforms == [] and layer.clip is None
    assert not layer.weight.requires_grad
    assert torch.allclose(layer(x), before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("bake", [True, False], ids=["baked", "weight-transform-only"])
def test_freeze_equals_unfrozen(spec: QuantSpec, bake: bool) -> None:
    layer = calibrated_layer(spec, bias_shift=0.25 if bake else 0.0)
    x = torch.randn(5, 48)
    live = layer(x)
    if bake:
        layer.bake()
    layer.freeze()
    assert layer.frozen_weight is not None
    assert torch.equal(layer(x), live)
    layer.unfreeze()
    assert layer.frozen_weight is None
    assert torch.equal(layer(x), live)


def test_freeze_without_bake_keeps_bias_transform() -> None:
    layer = calibrated_layer(SPECS[0], bias_shift=0.25)
    x = torch.randn(5, 48)
    live = layer(x)
    layer.freeze()
    assert torch.allclose(layer(x), live, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("baked", [False, True])
def test_export_reproduces_fake_quant_weight_exactly(spec: QuantSpec, baked: bool) -> None:
    layer = calibrated_layer(spec)
    if baked:
        layer.bake()
    weight, bias = layer.transformed()
    expected = layer.quantized_weight(weight)
    out = export_linear(layer)
    assert out["qweight"].dtype == torch.uint8 and out["qweight"].shape == (12, 48)
    assert int(out["qweight"].max()) <= spec.levels - 1
    assert out["w_bits"] == spec.bits and out["w_levels"] == spec.levels
    assert out["a_bits"] == 8 and out["a_sym"] is False
    size = 48 if spec.group <= 0 else spec.group
    assert out["group_size"] == size
    assert out["scale"].shape == out["zero"].shape == (12, -(-48 // size))
    rebuilt = dequantize_codes(out["qweight"], out["scale"], out["zero"], out["group_size"])
    assert torch.equal(rebuilt, expected)
    assert torch.equal(out["bias"], bias)


def test_export_without_weight_quantization_fails() -> None:
    with pytest.raises(ValueError, match="not quantized"):
        export_linear(FakeQuantLinear(nn.Linear(8, 4), None, QuantSpec(8), "x"))


@pytest.mark.parametrize("spec", SPECS[:2], ids=str)
def test_bake_keeps_outputs_when_clipping_widens_the_range(spec: QuantSpec) -> None:
    torch.manual_seed(3)
    layer = FakeQuantLinear(nn.Linear(16, 4), spec, None)
    x = torch.randn(2, 16)
    plain_rtn = layer(x)
    layer.clip = lambda g: (1.2 * g.amin(-1, keepdim=True), 1.3 * g.amax(-1, keepdim=True))
    before = layer(x)
    assert not torch.allclose(before, plain_rtn, atol=1e-4)  # the wider grid matters
    layer.bake()
    assert torch.allclose(layer(x), before, atol=1e-6, rtol=0)
