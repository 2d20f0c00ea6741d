"""Each format's grid at its storage dtype: the accounted bits per weight, and a packed save
that holds exactly them and dequantizes to the model's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from abqlab.alloc.pack import load_packed_weights, save_packed
from abqlab.alloc.size import model_size
from abqlab.config import QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import fake_quant_linears, freeze_model, quantize_model

HEADER_BYTES = 64 * 1024

# format settings → bits per weight of the quantized linears (codes + grid; NVFP4's fp32 per
# tensor adds 32 bits per linear, < 1e-3 bits per weight here)
CASES = {
    "int4 asym g64": ({"w_group": 64}, 4 + 32 / 64),
    "int4 sym g64": ({"w_group": 64, "w_sym": True}, 4 + 16 / 64),
    "fp4 g64": ({"w_group": 64, "w_format": "fp4_e2m1", "w_sym": True}, 4 + 16 / 64),
    "mxfp4": ({"w_group": 32, "w_format": "mxfp4", "w_sym": True}, 4 + 8 / 32),
    "nvfp4": ({"w_group": 16, "w_format": "nvfp4", "w_sym": True}, 4 + 8 / 16),
}


@pytest.mark.parametrize("case", list(CASES))
def test_grid_storage_per_format(fresh_2layer: LoadedModel, tmp_path: Path, case: str) -> None:
    settings, avg_bits = CASES[case]
    quantize_model(fresh_2layer.model, fresh_2layer.arch, QuantConfig(w_bits=4, **settings))
    freeze_model(fresh_2layer.model)
    size = model_size(fresh_2layer.model)
    assert size["size/avg_bits"] == pytest.approx(avg_bits, abs=1e-3)
    sizes = save_packed(fresh_2layer.model, tmp_path / "model.safetensors")
    linears = fake_quant_linears(fresh_2layer.model)
    assert 0 <= sizes["tensor_bytes"] - size["size/bytes"] <= len(linears)
    assert 0 < sizes["file_bytes"] - sizes["tensor_bytes"] < HEADER_BYTES
    weights = load_packed_weights(tmp_path / "model.safetensors")
    for module in linears:
        expected = module.frozen_weight
        error = (weights[module.name] - expected).abs().max()
        assert error <= 2e-3 * expected.abs().max(), module.name  # float16 scales at most


@pytest.mark.parametrize(("fmt", "group"), [("mxfp4", 32), ("nvfp4", 16)])
def test_one_byte_block_scales_are_stored_exactly(
    fresh_2layer: LoadedModel, tmp_path: Path, fmt: str, group: int
) -> None:
    """MX (E8M0) and NVFP4 (E4M3) block scales lose nothing in their one-byte store: the packed
    weights are the model's weights to float32 rounding."""
    model = fresh_2layer.model
    quant = QuantConfig(w_bits=4, w_group=group, w_format=fmt, w_sym=True)
    quantize_model(model, fresh_2layer.arch, quant)
    freeze_model(model)
    save_packed(model, tmp_path / "model.safetensors")
    weights = load_packed_weights(tmp_path / "model.safetensors")
    for module in fake_quant_linears(model):
        expected = module.frozen_weight
        assert torch.allclose(weights[module.name], expected, rtol=1e-5, atol=1e-9), module.name
