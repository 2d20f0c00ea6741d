"""Exact size accounting of a quantized model, in bits.

A quantized linear stores its codes at ``spec.storage_bits`` each plus its grid as its number
format stores it (``grids.py``: a 16-bit scale and zero per group for asymmetric integers, a
16-bit scale for symmetric ones and minifloats, an 8-bit exponent per MX block, an E4M3 byte per
NVFP4 block plus an fp32 per tensor), and its LoRC factors (at their bits, one 16-bit scale per
rank component and factor when quantized). Every other parameter (embeddings, norms, float
linears) counts 16 bits; a tied tensor counts once.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from abqlab.alloc.grids import grid_bits
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.spec import FP_BITS, QuantSpec

FLOAT_BITS = 16  # float leftovers are counted at 16 bits


def n_groups(rows: int, cols: int, group: int) -> int:
    """Quantization groups of a [rows, cols] weight: 1 per tensor, else per row (partial last)."""
    if group == 0:
        return 1
    size = cols if group < 0 else group
    return rows * -(-cols // size)


def weight_bits(rows: int, cols: int, spec: QuantSpec | None) -> int:
    """Storage bits of one weight matrix under ``spec`` (None: float)."""
    if spec is None:
        return FLOAT_BITS * rows * cols
    return spec.storage_bits * rows * cols + grid_bits(spec, n_groups(rows, cols, spec.group))


def lorc_bits(module: FakeQuantLinear) -> int:
    """Storage bits of a linear's LoRC factors U [out, r] and V [r, in] (0 without LoRC)."""
    if module.lorc_u is None:
        return 0
    bits = int(getattr(module, "lorc_bits", FP_BITS))
    elements = module.lorc_u.numel() + module.lorc_v.numel()
    if bits >= FP_BITS:
        return FLOAT_BITS * elements
    return bits * elements + 2 * FLOAT_BITS * module.lorc_u.shape[1]


def linear_bits(module: FakeQuantLinear) -> int:
    """Storage bits of a fake-quant linear: weight, its grid, LoRC factors (bias at 16 bits)."""
    bits = weight_bits(module.out_features, module.in_features, module.w_spec)
    bias = 0 if module.bias is None else FLOAT_BITS * module.bias.numel()
    return bits + bias + lorc_bits(module)


def model_size(model: nn.Module) -> dict[str, Any]:
    """``size/bytes`` (the whole model) and ``size/avg_bits`` (bits per weight of the quantized
    linears, grids and LoRC factors included; 16.0 when nothing is quantized)."""
    total, seen = 0, set()
    quantized = {
        id(m.weight): m for m in model.modules() if isinstance(m, FakeQuantLinear) and m.w_spec
    }
    q_bits = q_weights = 0
    for tensor in model.parameters():
        key = (tensor.data_ptr(), tensor.numel())
        if key in seen or tensor.numel() == 0:
            continue
        seen.add(key)
        module = quantized.get(id(tensor))
        if module is None:
            total += FLOAT_BITS * tensor.numel()
            continue
        bits = weight_bits(module.out_features, module.in_features, module.w_spec)
        bits += lorc_bits(module)
        total += bits
        q_bits, q_weights = q_bits + bits, q_weights + tensor.numel()
    return {
        "size/bytes": -(-total // 8),
        "size/avg_bits": q_bits / q_weights if q_weights else float(FLOAT_BITS),
    }
