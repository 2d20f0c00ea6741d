"""LoRC: truncated-SVD factors of the weight error, per layer type, int8 factors, in the layer."""

from __future__ import annotations

import torch
from torch import nn

from abqlab.config import LorcConfig
from abqlab.quant.export import export_linear
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.lorc import apply_lorc, load_factors, low_rank_factors, rank_for
from abqlab.quant.spec import QuantSpec


def layer(name: str = "model.layers.0.mlp.down_proj", fmt: str = "fp4_e2m1") -> FakeQuantLinear:
    torch.manual_seed(0)
    spec = QuantSpec(4, True, 32, fmt=fmt) if fmt != "int" else QuantSpec(4, False, 32)
    return FakeQuantLinear(nn.Linear(96, 48), spec, None, name)


def test_factors_are_the_truncated_svd() -> None:
    gen = torch.Generator().manual_seed(1)
    error = torch.randn(40, 30, generator=gen, dtype=torch.float64)
    s = torch.linalg.svdvals(error)
    for rank in (1, 8):
        u, v = low_rank_factors(error, rank)
        assert u.shape == (40, rank) and v.shape == (rank, 30)
        residual = torch.linalg.norm(error - (u @ v).double())
        assert torch.isclose(residual, torch.sqrt((s[rank:] ** 2).sum()), rtol=1e-5)
    u, v = low_rank_factors(error, 64)  # rank beyond min(shape): exact
    assert torch.allclose((u @ v).double(), error, atol=1e-5)


def test_int8_factors_lie_on_a_grid_and_stay_close() -> None:
    error = torch.randn(64, 48, generator=torch.Generator().manual_seed(2))
    u16, v16 = low_rank_factors(error, 8, bits=16)
    u8, v8 = low_rank_factors(error, 8, bits=8)
    for factor in (u8.T, v8):  # one scale per rank component: ≤ 255 distinct steps per row
        steps = factor / (factor.abs().amax(1, keepdim=True) / 127)
        assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert (u8 @ v8 - u16 @ v16).norm() < 0.02 * (u16 @ v16).norm()


def test_ranks_per_layer_type() -> None:
    cfg = LorcConfig(rank=8, ranks={"down_proj": 16, "self_attn.o_proj": 0, "proj": 2})
    assert rank_for(cfg, "model.layers.3.mlp.down_proj") == 16  # longest suffix wins
    assert rank_for(cfg, "model.layers.3.self_attn.o_proj") == 0
    assert rank_for(cfg, "model.layers.3.self_attn.q_proj") == 8  # "proj" is not a suffix path
    assert rank_for(LorcConfig(), "x.down_proj") == 0


def test_layer_computes_with_the_compensated_weight() -> None:
    lin = layer()
    lin.freeze()
    before = (lin.weight - lin.frozen_weight).norm()
    x = torch.randn(3, 96)
    summary = apply_lorc([lin], LorcConfig(rank=8, factor_bits=16))
    after = (lin.weight - lin.frozen_weight).norm()
    assert summary["layers"] == 1 and summary["params"] == 8 * (48 + 96)
    assert summary["rel_error_lorc"] < 0.9 * summary["rel_error"]
    assert after < 0.9 * before
    expected = x @ (lin.quantized_weight(lin.weight)).T + lin.bias
    assert torch.allclose(lin(x), expected, atol=1e-5)
    assert torch.allclose(lin.frozen_weight, lin.quantized_weight(lin.weight))


def test_reference_weight_from_a_rounding_method_is_used_and_dropped() -> None:
    """GPTQ overwrites the weight with its rounded copy: LoRC must use the float one."""
    lin = layer(fmt="int")
    original = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.copy_(lin.quantized_weight(lin.weight))  # as GPTQ leaves it
    lin.lorc_reference = original
    summary = apply_lorc([lin], LorcConfig(rank=4, factor_bits=16))
    assert summary["rel_error"] > 0.01  # measured against the float weight, not zero
    assert not hasattr(lin, "lorc_reference")
    plain = layer(fmt="int")
    plain.lorc_reference = original
    assert apply_lorc([plain], LorcConfig(rank=0)) == {} and not hasattr(plain, "lorc_reference")


def test_export_round_trip_of_int8_factors() -> None:
    lin = layer()
    apply_lorc([lin], LorcConfig(rank=8, factor_bits=8))
    saved = export_linear(lin)["lorc"]
    assert saved["bits"] == 8 and saved["u_t"]["codes"].dtype == torch.uint8
    assert saved["u_t"]["codes"].shape == (8, 48) and saved["v"]["codes"].shape == (8, 96)
    fresh = layer()
    load_factors(fresh, saved)
    assert torch.allclose(fresh.lorc_u, lin.lorc_u, rtol=1e-5, atol=1e-7)
    assert torch.allclose(fresh.lorc_v, lin.lorc_v, rtol=1e-5, atol=1e-7)
