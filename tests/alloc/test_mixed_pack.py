"""The packed save: codes really at their width, file size = the accounted size/bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from abqlab.alloc.pack import load_packed_weights, pack_codes, save_packed, unpack_codes
from abqlab.alloc.size import model_size
from abqlab.config import QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import fake_quant_linears, freeze_model, quantize_model

HEADER_BYTES = 64 * 1024  # the safetensors JSON header (names, shapes, layout metadata)


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_pack_round_trip(bits: int) -> None:
    codes = torch.randint(0, 2**bits, (7, 13), generator=torch.Generator().manual_seed(bits))
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-codes.numel() * bits // 8)
    assert torch.equal(unpack_codes(packed, bits, codes.numel()).reshape(7, 13), codes)


def test_codes_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="outside 0..3"):
        pack_codes(torch.tensor([0, 4]), 2)


def test_file_size_matches_the_accounting(fresh_2layer: LoadedModel, tmp_path: Path) -> None:
    widths = {"model.layers.0.mlp.down_proj": 8, "model.layers.1.self_attn.q_proj": 2,
              "model.layers.1.mlp.up_proj": 4}
    quant = QuantConfig(w_bits=3, w_group=64, layer_bits=widths)
    quantize_model(fresh_2layer.model, fresh_2layer.arch, quant)
    freeze_model(fresh_2layer.model)
    accounted = model_size(fresh_2layer.model)["size/bytes"]
    sizes = save_packed(fresh_2layer.model, tmp_path / "model.safetensors")
    linears = fake_quant_linears(fresh_2layer.model)
    assert 0 <= sizes["tensor_bytes"] - accounted <= len(linears)  # codes rounded to bytes
    assert 0 < sizes["file_bytes"] - sizes["tensor_bytes"] < HEADER_BYTES
    weights = load_packed_weights(tmp_path / "model.safetensors")
    for module in linears:
        expected = module.frozen_weight
        error = (weights[module.name] - expected).abs().max()
        assert error <= 2e-3 * expected.abs().max()  # float16 scales and zeros
