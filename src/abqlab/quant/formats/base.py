"""What a number format is to the quantizer: range → scale (and zero), fake quant, codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from abqlab.quant.spec import QuantSpec

SCALE_RULES = ("none", "m1", "m2")


class NumberFormat:
    """A family member: integers, a minifloat, a block-scaled float.

    ``block``: the group size the format fixes (block-scaled formats), else None (any
    granularity). ``scale_rules``: which ZeroQuant-FP scale constraints make sense on it.
    Tensors are grouped ``[rows, n_groups, group_size]``; scales and zeros ``[rows, n_groups, 1]``
    (or anything that broadcasts, e.g. one GPTQ column).
    """

    name: str = ""
    bits: int = 0
    block: int | None = None
    is_float: ClassVar[bool] = True
    scale_rules: ClassVar[tuple[str, ...]] = SCALE_RULES

    def scale(self, lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        """Scale per group from the group's (min, max) range, before any scale constraint."""
        raise NotImplementedError

    def zero(self, lo: torch.Tensor, scale: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        """Zero point per group (float formats are symmetric: 0)."""
        return torch.zeros_like(scale)

    def fake(
        self, grouped: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
    ) -> torch.Tensor:
        """Quantize then dequantize; exact forward, straight-through gradient."""
        raise NotImplementedError

    def encode(
        self, grouped: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
    ) -> torch.Tensor:
        """Storable unsigned codes of the quantized values (uint8; int16 if they need it)."""
        raise NotImplementedError

    def dequantize(
        self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor
    ) -> torch.Tensor:
        """Values of ``codes`` given their (broadcast) scale and exported zero."""
        raise NotImplementedError

    def describe(self, spec: QuantSpec) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def with_surrogate_grad(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``exact`` in the forward pass (bit for bit), the gradient of ``surrogate`` backward."""
    if not surrogate.requires_grad:
        return exact
    return exact + (surrogate - surrogate.detach())


def floor_log2(x: torch.Tensor) -> torch.Tensor:
    """⌊log₂ x⌋ for x > 0, exactly (from the float's exponent field, no log rounding)."""
    _, exponent = torch.frexp(x)
    return exponent - 1


def ceil_log2(x: torch.Tensor) -> torch.Tensor:
    """⌈log₂ x⌉ for x > 0, exactly."""
    mantissa, exponent = torch.frexp(x)
    return torch.where(mantissa == 0.5, exponent - 1, exponent)


def pow2(exponent: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """2**exponent as ``like``'s dtype (exact for every representable power)."""
    return torch.ldexp(torch.ones_like(like), exponent.to(torch.int32))
