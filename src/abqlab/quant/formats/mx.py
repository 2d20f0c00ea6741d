"""OCP Microscaling (MX v1.0): blocks of 32 elements sharing one E8M0 (power-of-two) scale.

The shared scale follows the spec's conversion (§6.3): X = 2^(⌊log₂ amax⌋ − emax_elem), with
emax_elem the exponent of the element type's largest normal (E4M3: 8, E5M2: 15, E3M2: 4,
E2M3: 2, E2M1: 2), clamped to E8M0's range [2^-127, 2^127]; elements are then x / X rounded to
nearest even with saturation. The largest element of a block may therefore saturate (e.g. FP4:
amax = 7.9 gives X = 1 and 7.9 → 6): that is the format, not a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from abqlab.quant.formats.base import floor_log2, pow2, with_surrogate_grad
from abqlab.quant.formats.minifloat import E2M1, E2M3, E3M2, E4M3, E5M2, FloatFormat, Minifloat

if TYPE_CHECKING:
    from abqlab.quant.spec import QuantSpec

MX_BLOCK = 32
E8M0_MIN, E8M0_MAX = -127, 127


class MXFormat(FloatFormat):
    """A minifloat element with a shared E8M0 scale per block of 32."""

    scale_rules = ("none",)  # the scales are powers of two already

    def __init__(self, name: str, element: Minifloat, block: int = MX_BLOCK) -> None:
        super().__init__(name, element)
        self.block = block

    def scale(self, lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        amax = torch.maximum(lo.abs(), hi.abs())
        emax = self.element.emax
        exponent = (floor_log2(amax.detach()) - emax).clamp(E8M0_MIN, E8M0_MAX)
        exponent = torch.where(amax.detach() > 0, exponent, torch.full_like(exponent, E8M0_MIN))
        # gradient (learnable clipping) as if the scale were amax / 2^emax, unrounded
        return with_surrogate_grad(pow2(exponent, amax), amax / 2.0**emax)

    def describe(self, spec: QuantSpec) -> str:
        return f"{self.name} (E8M0 scale per {self.block})"


MXFP8 = MXFormat("mxfp8", E4M3)
MXFP8_E5M2 = MXFormat("mxfp8_e5m2", E5M2)
MXFP6_E3M2 = MXFormat("mxfp6_e3m2", E3M2)
MXFP6_E2M3 = MXFormat("mxfp6_e2m3", E2M3)
MXFP4 = MXFormat("mxfp4", E2M1)
