"""What a quantizer does, as a frozen value: format, bits, symmetry, granularity, bit balance."""

from __future__ import annotations

from dataclasses import dataclass

PER_TENSOR = 0
PER_CHANNEL = -1  # for weights: one scale per output row; for activations: per token

FP_BITS = 16  # "no quantization" in configs (W4A16 means float activations)


@dataclass(frozen=True)
class QuantSpec:
    """Quantization of a tensor (integers unless ``fmt`` names another number format).

    ``group``: 0 per tensor, -1 per channel (weights) / per token (activations), g > 0 groups of
    g consecutive input elements. ``bit_balance`` adds one level so the grid is symmetric around
    zero: 2**bits + 1 levels (for 2 bits: -2..2, ABQ-LLM's W2*). ``partial_group`` lets the last
    group of a row be shorter when g does not divide the row (GPTQ's column // g convention).

    ``fmt`` names a registered number format (``abqlab.quant.formats``): ``int`` or a float format,
    whose width ``bits`` must match and which is symmetric (``sym=True``); block-scaled formats fix
    ``group``. ``scale_rule``: ZeroQuant-FP's power-of-two scale constraints (``m1``, ``m2``; see
    ``formats.scale_rules``). ``activation``: a dynamic activation quantizer, whose statistics
    never cross tokens (NVFP4's fp32 scale becomes per token).
    """

    bits: int
    sym: bool = False
    group: int = PER_CHANNEL
    bit_balance: bool = False
    partial_group: bool = False
    fmt: str = "int"
    scale_rule: str = "none"
    activation: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ValueError(f"bits must be 1..8, got {self.bits}")
        if self.fmt != "int" or self.scale_rule != "none":
            from abqlab.quant.formats.checks import spec_problem

            problem = spec_problem(self)
            if problem:
                raise ValueError(problem)
        if self.sym and self.bits == 1 and not self.bit_balance:
            raise ValueError("1-bit symmetric has no zero level; use asym or bit_balance")
        if self.group < -1:
            raise ValueError(f"group must be -1, 0 or positive, got {self.group}")

    @property
    def levels(self) -> int:
        """Number of representable values."""
        return 2**self.bits + (1 if self.bit_balance else 0)

    @property
    def qmin(self) -> int:
        """Smallest integer code (signed for symmetric, 0 for asymmetric)."""
        return -(2 ** (self.bits - 1)) if self.sym else 0

    @property
    def qmax(self) -> int:
        """Largest integer code."""
        if self.sym:
            return 2 ** (self.bits - 1) - (0 if self.bit_balance else 1)
        return self.levels - 1

    @property
    def scale_divisor(self) -> int:
        """What the range (asym) or absolute maximum (sym) is divided by to get the scale."""
        if self.sym:
            return 2 ** (self.bits - 1) if self.bit_balance else 2 ** (self.bits - 1) - 1
        return self.levels - 1

    @property
    def storage_bits(self) -> int:
        """Bits needed to store one code (bit balance needs one more)."""
        return (self.levels - 1).bit_length()
