"""Integers at 1..8 bits, symmetric or asymmetric, with optional bit balance (today's grids)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from abqlab.quant.formats.base import NumberFormat
from abqlab.quant.ste import round_ste

if TYPE_CHECKING:
    from abqlab.quant.spec import QuantSpec

EPS = 1e-8


class IntegerFormat(NumberFormat):
    """x̂ = (clamp(round(x / s) + z, qmin, qmax) − z) · s; bits, sym and bit balance from the spec.

    Symmetric: s = amax / divisor, z = 0. Asymmetric: s = (max − min) / divisor,
    z = round(−min / s) (rounded with an STE so learnable bounds get gradients).
    """

    name = "int"
    is_float = False

    def scale(self, lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        if spec.sym:
            return torch.maximum(lo.abs(), hi.abs()).clamp(min=EPS) / spec.scale_divisor
        return (hi - lo).clamp(min=EPS) / spec.scale_divisor

    def zero(self, lo: torch.Tensor, scale: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        if spec.sym:
            return torch.zeros_like(scale)
        return round_ste(-lo / scale)

    def fake(
        self, grouped: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
    ) -> torch.Tensor:
        q = torch.clamp(round_ste(grouped / scale) + zero, spec.qmin, spec.qmax)
        return (q - zero) * scale

    def encode(
        self, grouped: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
    ) -> torch.Tensor:
        """Codes in [0, levels − 1]: symmetric grids shifted by −qmin."""
        q = torch.clamp(torch.round(grouped / scale) + zero, spec.qmin, spec.qmax)
        dtype = torch.uint8 if spec.levels <= 256 else torch.int16  # 8-bit bit balance: 257
        return (q - spec.qmin).to(dtype)

    def dequantize(
        self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor
    ) -> torch.Tensor:
        return (codes.float() - zero) * scale


INT = IntegerFormat()
