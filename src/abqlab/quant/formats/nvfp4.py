"""NVIDIA NVFP4: E2M1 elements in blocks of 16, an E4M3 scale per block and an fp32 scale.

Two-level scaling (NVIDIA's NVFP4 recipe): the fp32 scale is g = amax / (6 · 448) over the whole
tensor, so the block scales amax_b / (6 g) fit E4M3; each block scale is rounded to E4M3
(nearest even, at least its smallest subnormal 2^-9 so an all-small block still has a scale), and
the block's elements are x / (s_b · g) rounded to E2M1. For activations (``spec.activation``) the
fp32 scale is per token instead of per tensor, so no token's grid depends on another token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from abqlab.quant.formats.minifloat import E2M1, E4M3, FloatFormat

if TYPE_CHECKING:
    from abqlab.quant.spec import QuantSpec

NV_BLOCK = 16
TINY = 1e-30


class NVFP4Format(FloatFormat):
    scale_rules = ("none",)  # E4M3 block scales: the power-of-two constraints do not apply

    def __init__(self) -> None:
        super().__init__("nvfp4", E2M1)
        self.block = NV_BLOCK
        self.scale_element = E4M3

    def tensor_scale(self, amax: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        """The fp32 second-level scale: per tensor (weights) or per token (activations)."""
        dims = (-2,) if spec.activation else tuple(range(amax.dim() - 1))
        outer = amax.amax(dim=dims, keepdim=True)
        return (outer / (self.element.max_value * self.scale_element.max_value)).clamp(min=TINY)

    def scale(self, lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        amax = torch.maximum(lo.abs(), hi.abs())
        outer = self.tensor_scale(amax, spec)
        block = self.scale_element.round_ste(amax / self.element.max_value / outer)
        smallest = 2.0**(self.scale_element.min_exp - self.scale_element.man_bits)
        return block.clamp(min=smallest) * outer

    def describe(self, spec: QuantSpec) -> str:
        outer = "per-token" if spec.activation else "per-tensor"
        return f"nvfp4 (E4M3 scale per {self.block}, {outer} fp32)"


NVFP4 = NVFP4Format()
