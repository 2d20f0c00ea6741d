"""Size accounting: codes at their width, a 16-bit scale and zero per group, float leftovers."""

from __future__ import annotations

import pytest

from abqlab.alloc.size import model_size, weight_bits
from abqlab.config import QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import fake_quant_linears, quantize_model
from abqlab.quant.spec import QuantSpec


def test_weight_bits_counts_codes_and_grids() -> None:
    assert weight_bits(4, 128, None) == 16 * 4 * 128
    assert weight_bits(4, 128, QuantSpec(4, group=64)) == 4 * 4 * 128 + 32 * 4 * 2
    assert weight_bits(4, 100, QuantSpec(3, group=64, partial_group=True)) == 3 * 400 + 32 * 4 * 2
    assert weight_bits(4, 128, QuantSpec(2, group=-1)) == 2 * 512 + 32 * 4
    assert weight_bits(4, 128, QuantSpec(2, group=0)) == 2 * 512 + 32
    assert weight_bits(4, 128, QuantSpec(2, bit_balance=True)) == 3 * 512 + 32 * 4


def test_w4_g64_is_four_and_a_half_bits(fresh_2layer: LoadedModel) -> None:
    float_bytes = model_size(fresh_2layer.model)["size/bytes"]
    quantize_model(fresh_2layer.model, fresh_2layer.arch, QuantConfig(w_bits=4, w_group=64))
    size = model_size(fresh_2layer.model)
    assert size["size/avg_bits"] == 4.5
    weights = sum(m.weight.numel() for m in fake_quant_linears(fresh_2layer.model))
    assert size["size/bytes"] == float_bytes - weights * (16 - 4.5) / 8


def test_per_layer_widths_are_counted(fresh_2layer: LoadedModel) -> None:
    name = "model.layers.1.mlp.down_proj"
    quant = QuantConfig(w_bits=3, w_group=64, layer_bits={name: 8})
    quantize_model(fresh_2layer.model, fresh_2layer.arch, quant)
    linears = {m.name: m for m in fake_quant_linears(fresh_2layer.model)}
    assert linears[name].w_spec.bits == 8
    assert {m.w_spec.bits for n, m in linears.items() if n != name} == {3}
    down = linears[name].weight.numel()
    others = sum(m.weight.numel() for m in linears.values()) - down
    expected = (others * 3.5 + down * 8.5) / (others + down)
    assert model_size(fresh_2layer.model)["size/avg_bits"] == pytest.approx(expected, rel=1e-12)
