"""QuantSpec: validation and the integer range for each (bits, sym, bit balance)."""

from __future__ import annotations

import pytest

from abqlab.quant.spec import QuantSpec


@pytest.mark.parametrize("bits", [0, 9, 16, -1])
def test_bits_outside_one_to_eight_rejected(bits: int) -> None:
    with pytest.raises(ValueError, match="bits must be 1..8"):
        QuantSpec(bits)


def test_one_bit_symmetric_needs_bit_balance() -> None:
    with pytest.raises(ValueError, match="no zero level"):
        QuantSpec(1, sym=True)
    spec = QuantSpec(1, sym=True, bit_balance=True)
    assert (spec.qmin, spec.qmax, spec.levels) == (-1, 1, 3)


def test_group_below_minus_one_rejected() -> None:
    with pytest.raises(ValueError, match="group"):
        QuantSpec(4, group=-2)


@pytest.mark.parametrize("bits", range(1, 9))
def test_integer_ranges(bits: int) -> None:
    asym = QuantSpec(bits)
    assert (asym.qmin, asym.qmax, asym.levels) == (0, 2**bits - 1, 2**bits)
    assert asym.storage_bits == bits
    asym_bb = QuantSpec(bits, bit_balance=True)
    assert (asym_bb.qmin, asym_bb.qmax, asym_bb.levels) == (0, 2**bits, 2**bits + 1)
    assert asym_bb.storage_bits == bits + 1
    bb = QuantSpec(bits, sym=True, bit_balance=True)
    assert (bb.qmin, bb.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1))
    assert bb.qmax - bb.qmin + 1 == bb.levels
    if bits > 1:
        sym = QuantSpec(bits, sym=True)
        assert (sym.qmin, sym.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        assert sym.qmax - sym.qmin + 1 == sym.levels == 2**bits


def test_spec_is_frozen_and_hashable() -> None:
    spec = QuantSpec(4)
    with pytest.raises(AttributeError):
        spec.bits = 3  # type: ignore[misc]
    assert {spec: 1}[QuantSpec(4)] == 1
