"""Tables label mixed-precision runs by their budget, not by the nominal w_bits."""

from __future__ import annotations

from abqlab.tables.layout import setting_label

BASE = {"w_bits": 3, "a_bits": 16, "w_group": 64}


def test_budget_and_layer_bits_labels() -> None:
    assert setting_label(BASE) == "W3A16g64"
    assert setting_label({**BASE, "budget": {"avg_bits": 3.5, "bytes": None}}) == "W3.5bA16g64"
    assert setting_label({**BASE, "budget": {"avg_bits": None, "bytes": 1000}}) == "W1000BA16g64"
    mixed = {**BASE, "layer_bits": {"model.layers.0.mlp.up_proj": 4}, "budget": {}}
    assert setting_label(mixed) == "WmixA16g64"
    assert setting_label({**BASE, "budget": {"avg_bits": None, "bytes": None}}) == "W3A16g64"
