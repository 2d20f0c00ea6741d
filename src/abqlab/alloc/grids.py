"""How a quantized linear's grid (scales and zeros) is stored, per number format.

One rule serves the size accounting (``size.py``) and the packed save (``pack.py``), so the file
holds what ``size/bytes`` counts:

- ``scale_zero`` (asymmetric integers): a float16 scale and a float16 zero per group;
- ``scale`` (symmetric integers, whose zero is the constant −qmin kept in the metadata; the
  minifloats FP8/FP6/FP4 with a free scale): a float16 scale per group;
- ``e8m0`` (OCP MX): one byte per block, the power-of-two scale's biased exponent;
- ``e4m3`` (NVFP4): one E4M3 byte per block of 16 and one float32 per tensor.

ZeroQuant-FP's power-of-two scale rules (m1, m2) keep their format's float16 scale here: an
upper bound of what an exponent-only store would need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from abqlab.quant.formats import get_format
from abqlab.quant.formats.mx import MXFormat
from abqlab.quant.spec import QuantSpec

# bits per group, bits per tensor
GRID_BITS = {"scale_zero": (32, 0), "scale": (16, 0), "e8m0": (8, 0), "e4m3": (8, 32)}
E8M0_BIAS = 127
E4M3_MAX = 448.0
TOLERANCE = 1e-3  # the largest relative change of a scale the store may make (float16 rounding)


def grid_kind(spec: QuantSpec) -> str:
    """Which of ``GRID_BITS`` stores this weight quantizer's grid."""
    fmt = get_format(spec.fmt)
    if spec.fmt == "nvfp4":
        return "e4m3"
    if isinstance(fmt, MXFormat):
        return "e8m0"
    return "scale_zero" if not fmt.is_float and not spec.sym else "scale"


def grid_bits(spec: QuantSpec, groups: int) -> int:
    """Storage bits of the grid of one weight tensor with ``groups`` groups."""
    per_group, per_tensor = GRID_BITS[grid_kind(spec)]
    return per_group * groups + per_tensor


def _checked(kind: str, scale: torch.Tensor, stored: torch.Tensor) -> None:
    change = ((stored - scale).abs() / scale.abs().clamp(min=1e-30)).max()
    if float(change) > TOLERANCE:
        raise ValueError(f"scales not representable as {kind} (change {float(change):.2g})")


def encode_grid(
    spec: QuantSpec, scale: torch.Tensor, zero: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata that store ``scale`` and exported ``zero`` [rows, groups]."""
    kind = grid_kind(spec)
    scale = scale.float()
    if kind == "scale_zero":
        return {"scale": scale.half(), "zero": zero.half()}, {"grid": kind}
    if torch.unique(zero).numel() > 1:
        raise ValueError(f"{kind} grids have one zero point, found {torch.unique(zero).numel()}")
    meta = {"grid": kind, "zero": float(zero.reshape(-1)[0]) if zero.numel() else 0.0}
    if kind == "scale":
        return {"scale": scale.half()}, meta
    if kind == "e8m0":
        exponent = torch.log2(scale).round()
        _checked(kind, scale, torch.exp2(exponent))
        return {"scale": (exponent + E8M0_BIAS).to(torch.uint8)}, meta
    outer = scale.max() / E4M3_MAX
    blocks = (scale / outer).to(torch.float8_e4m3fn)
    _checked(kind, scale, blocks.float() * outer)
    return {"scale": blocks, "tensor_scale": outer.reshape(1)}, meta


def decode_grid(
    meta: dict[str, Any], tensor: Callable[[str], torch.Tensor], rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) [rows, groups] as float32 from what :func:`encode_grid` stored."""
    kind = meta.get("grid", "scale_zero")
    stored = tensor("scale")
    if kind == "scale_zero":
        return stored.float().expand(rows, -1), tensor("zero").float().expand(rows, -1)
    if kind == "scale":
        scale = stored.float()
    elif kind == "e8m0":
        scale = torch.exp2(stored.float() - E8M0_BIAS)
    else:
        scale = stored.float() * tensor("tensor_scale").float()
    scale = scale.expand(rows, -1)
    return scale, torch.full_like(scale, meta["zero"])
