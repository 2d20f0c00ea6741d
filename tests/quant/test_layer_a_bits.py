"""Activation bits per linear (``quant.layer_a_bits``): glob patterns, first match wins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from abqlab.config import QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import act_bits, quantize_model
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.validate import ConfigError, check_run

SPARE_MLP_INPUT = {"*mlp.gate_proj": 8, "*mlp.up_proj": 8, "*.1.mlp.*": 16}


def test_first_matching_pattern_wins() -> None:
    cfg = QuantConfig(w_bits=4, a_bits=4, layer_a_bits={"*.1.mlp.*": 16, **SPARE_MLP_INPUT})
    assert act_bits(cfg, "model.layers.0.mlp.gate_proj") == 8
    assert act_bits(cfg, "model.layers.1.mlp.gate_proj") == 16
    assert act_bits(cfg, "model.layers.0.mlp.down_proj") == 4
    assert act_bits(cfg, "model.layers.0.self_attn.q_proj") == 4


def test_quantized_model_uses_the_overrides(fresh_2layer: LoadedModel) -> None:
    cfg = QuantConfig(w_bits=4, a_bits=4, layer_a_bits=SPARE_MLP_INPUT)
    quantize_model(fresh_2layer.model, fresh_2layer.arch, cfg)
    bits = {m.name: (None if m.a_spec is None else m.a_spec.bits)
            for m in fresh_2layer.model.modules() if isinstance(m, FakeQuantLinear)}
    assert bits["model.layers.0.mlp.gate_proj"] == bits["model.layers.0.mlp.up_proj"] == 8
    assert bits["model.layers.1.mlp.down_proj"] is None  # 16: float input
    assert bits["model.layers.0.mlp.down_proj"] == bits["model.layers.1.self_attn.o_proj"] == 4


def test_hydra_override_and_validation(composer: Callable[..., Any]) -> None:
    cfg = composer("quant=w4a4", "++quant.layer_a_bits={*mlp.gate_proj:8}")
    check_run(cfg)
    assert dict(cfg.quant.layer_a_bits) == {"*mlp.gate_proj": 8}
    with pytest.raises(ConfigError, match="layer_a_bits"):
        check_run(composer("quant=w4a4", "++quant.layer_a_bits={*mlp.gate_proj:9}"))
