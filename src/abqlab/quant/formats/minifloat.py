"""Minifloats (FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4 E2M1) with one fp32 scale per group.

Rounding is IEEE round-to-nearest-even on the element grid, with saturation: values beyond the
largest finite element become it (never inf or NaN; E4M3 is the "fn" variant, max 448, whose
only special code is NaN). Grids: OCP 8-bit FP spec (E4M3 bias 7, E5M2 bias 15, IEEE-like
inf/NaN codes) and OCP MX v1.0 (FP6 E3M2 bias 3 / E2M3 bias 1, FP4 E2M1 bias 1; no specials).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch

from abqlab.quant.formats.base import NumberFormat

if TYPE_CHECKING:
    from abqlab.quant.spec import QuantSpec

EPS = 1e-12
SPECIALS = ("none", "fn", "ieee")  # none: all codes finite; fn: S.1111.111 NaN; ieee: top exp


@dataclass(frozen=True)
class Minifloat:
    """A sign-exponent-mantissa element type: ``exp_bits``, ``man_bits``, ``bias``, ``specials``."""

    exp_bits: int
    man_bits: int
    bias: int
    specials: str = "none"

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def min_exp(self) -> int:
        """Exponent of the smallest normal (subnormals share its quantum)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite value."""
        top = 2**self.exp_bits - 1
        return (top - 1 if self.specials == "ieee" else top) - self.bias

    @property
    def max_value(self) -> float:
        ulps = 2 if self.specials == "fn" else 1  # fn: the all-ones mantissa at the top is NaN
        return (2.0 - ulps * 2.0**-self.man_bits) * 2.0**self.emax

    def round(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest element (ties to even), saturating at ±max; no gradient."""
        a = x.abs().clamp(max=self.max_value)
        _, exponent = torch.frexp(a)
        binade = (exponent - 1).clamp(min=self.min_exp)
        quantum = torch.ldexp(torch.ones_like(a), binade - self.man_bits)
        return torch.copysign(torch.round(a / quantum) * quantum, x)

    def round_ste(self, x: torch.Tensor) -> torch.Tensor:
        """``round`` forward (exact: Sterbenz makes r − c exact), identity gradient inside ±max."""
        clamped = x.clamp(-self.max_value, self.max_value)
        return clamped + (self.round(clamped) - clamped).detach()

    @cached_property
    def table(self) -> torch.Tensor:
        """Value of every code (sign · exponent · mantissa bit pattern); NaN/inf for specials."""
        codes = torch.arange(2**self.bits, dtype=torch.int64)
        sign = 1.0 - 2.0 * (codes >> (self.bits - 1)).double()
        field = (codes >> self.man_bits) & (2**self.exp_bits - 1)
        mantissa = (codes & (2**self.man_bits - 1)).double() / 2**self.man_bits
        normal = field > 0
        exponent = torch.where(normal, field - self.bias, torch.full_like(field, self.min_exp))
        value = sign * (mantissa + normal.double()) * torch.pow(2.0, exponent.double())
        top = field == 2**self.exp_bits - 1
        if self.specials == "fn":
            value[top & ((codes & (2**self.man_bits - 1)) == 2**self.man_bits - 1)] = torch.nan
        elif self.specials == "ieee":
            value[top] = torch.where(mantissa[top] == 0, sign[top] * torch.inf, torch.nan)
        return value.float()

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Bit patterns (uint8) of values already on the grid."""
        a = values.abs()
        _, exponent = torch.frexp(a)
        binade = (exponent - 1).clamp(min=self.min_exp)
        normal = a >= 2.0**self.min_exp
        field = torch.where(normal, binade + self.bias, torch.zeros_like(binade))
        step = torch.ldexp(torch.ones_like(a), binade - self.man_bits)
        mantissa = torch.round(a / step).to(torch.int64) - normal.to(torch.int64) * 2**self.man_bits
        sign = torch.signbit(values).to(torch.int64)
        code = (sign << (self.bits - 1)) | (field.to(torch.int64) << self.man_bits) | mantissa
        return code.to(torch.uint8)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.table.to(codes.device)[codes.long()]


class FloatFormat(NumberFormat):
    """A minifloat element with one fp32 scale per group: s = amax / max_element."""

    def __init__(self, name: str, element: Minifloat) -> None:
        self.name = name
        self.element = element
        self.bits = element.bits

    def scale(self, lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        amax = torch.maximum(lo.abs(), hi.abs()).clamp(min=EPS)
        return amax / self.element.max_value

    def fake(
        self, grouped: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
    ) -> torch.Tensor:
        return self.element.round_ste(grouped / scale) * scale

    def encode(
        self, grouped: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
    ) -> torch.Tensor:
        return self.element.encode(self.element.round(grouped / scale))

    def dequantize(
        self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor
    ) -> torch.Tensor:
        return self.element.decode(codes) * scale


E4M3 = Minifloat(4, 3, 7, "fn")
E5M2 = Minifloat(5, 2, 15, "ieee")
E3M2 = Minifloat(3, 2, 3)
E2M3 = Minifloat(2, 3, 1)
E2M1 = Minifloat(2, 1, 1)

FP8_E4M3 = FloatFormat("fp8_e4m3", E4M3)
FP8_E5M2 = FloatFormat("fp8_e5m2", E5M2)
FP6_E3M2 = FloatFormat("fp6_e3m2", E3M2)
FP6_E2M3 = FloatFormat("fp6_e2m3", E2M3)
FP4_E2M1 = FloatFormat("fp4_e2m1", E2M1)
