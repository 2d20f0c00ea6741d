"""Quantizer math: error bounds, level counts, bit balance, groups, sym/asym, codes."""

from __future__ import annotations

import itertools

import pytest
import torch
from quant_ref import chunks, levels, ref_fake_quant_rows, ref_scale

from abqlab.quant.quantizer import (
    dequantize_codes,
    fake_quant,
    from_groups,
    qparams,
    quantize_codes,
    to_groups,
)
from abqlab.quant.spec import QuantSpec

BITS = range(1, 9)
# (name, group, partial, shape): per-token is per-channel on a [batch, seq, hidden] activation
GRANULARITIES = [
    ("tensor", 0, False, (6, 48)),
    ("channel", -1, False, (6, 48)),
    ("group16", 16, False, (6, 48)),
    ("group20-partial", 20, True, (6, 48)),
    ("token", -1, False, (2, 5, 48)),
]
MODES = [(False, False), (True, False), (True, True), (False, True)]  # (sym, bit_balance)


def valid(bits: int, sym: bool, bit_balance: bool) -> bool:
    return not (bits == 1 and sym and not bit_balance)


def cases() -> list:
    """(bits, sym, bit_balance, granularity) for every valid spec."""
    return [
        pytest.param(
            b, s, bb, g, id=f"{b}-{s}-{bb}-{g[0]}"
        )
        for b, (s, bb), g in itertools.product(BITS, MODES, GRANULARITIES)
        if valid(b, s, bb)
    ]


def sample(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    x.view(-1)[::17] *= 6.0  # a few outliers
    return x


@pytest.mark.parametrize(("bits", "sym", "bb", "gran"), cases())
def test_error_at_most_half_a_step_and_on_grid(bits: int, sym: bool, bb: bool, gran: tuple) -> None:
    _, group, partial, shape = gran
    x = sample(shape, seed=bits)
    spec = QuantSpec(bits, sym, group, bb, partial)
    xq = fake_quant(x, spec)
    assert xq.shape == x.shape
    for xc, qc in zip(chunks(x, group), chunks(xq, group), strict=True):
        scale = ref_scale(xc, bits, sym, bb)
        err = (xc - qc).abs()
        assert torch.all(err <= scale / 2 * (1 + 1e-5) + 1e-7), (err / scale).max()
        steps = qc / scale  # (code - zero): an integer number of steps
        assert torch.allclose(steps, steps.round(), atol=1e-3)
        assert int((steps.amax(1) - steps.amin(1)).max().round()) <= levels(bits, bb) - 1


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("sym", "bb"), [(False, False), (False, True), (True, True)])
def test_rows_match_reference_rtn(bits: int, sym: bool, bb: bool) -> None:
    if not valid(bits, sym, bb):
        pytest.skip("invalid spec")
    x = sample((8, 64), seed=100 + bits)
    got = fake_quant(x, QuantSpec(bits, sym, -1, bb))
    assert torch.allclose(got, ref_fake_quant_rows(x, bits, sym, bb), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_symmetric_matches_reference_rtn(bits: int) -> None:
    x = sample((8, 64), seed=200 + bits)
    got = fake_quant(x, QuantSpec(bits, True, -1))
    assert torch.allclose(got, ref_fake_quant_rows(x, bits, True), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("sym", "bb"), MODES)
def test_level_count_at_most_levels_on_random_data(bits: int, sym: bool, bb: bool) -> None:
    if not valid(bits, sym, bb):
        pytest.skip("invalid spec")
    spec = QuantSpec(bits, sym, 0, bb)
    xq = fake_quant(sample((1, 4096), seed=3), spec)
    assert xq.unique().numel() <= spec.levels == levels(bits, bb)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("bb", [False, True])
def test_every_asym_level_reachable_on_a_linspace(bits: int, bb: bool) -> None:
    spec = QuantSpec(bits, False, 0, bb)
    x = torch.linspace(-0.37, 1.13, 20001).reshape(1, -1)
    assert fake_quant(x, spec).unique().numel() == spec.levels


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("bb", [False, True])
def test_every_sym_level_reachable_past_the_clipping_range(bits: int, bb: bool) -> None:
    if not valid(bits, True, bb):
        pytest.skip("invalid spec")
    spec = QuantSpec(bits, True, 0, bb)
    x = torch.linspace(-1.6, 1.6, 20001).reshape(1, -1)
    lo, hi = torch.tensor(-1.0), torch.tensor(1.0)
    values = fake_quant(x, spec, lo, hi).unique()
    assert values.numel() == spec.levels
    step = ref_scale(torch.tensor([[-1.0, 1.0]]), bits, True, bb).item()
    assert values.min().item() == pytest.approx(spec.qmin * step)
    assert values.max().item() == pytest.approx(spec.qmax * step)


def test_two_bit_bit_balance_codes_and_grid() -> None:
    spec = QuantSpec(2, sym=True, bit_balance=True)
    assert (spec.qmin, spec.qmax, spec.levels, spec.storage_bits) == (-2, 2, 5, 3)
    x = torch.linspace(-1, 1, 101).reshape(1, -1)
    values = fake_quant(x, spec).unique()
    assert torch.allclose(values, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    codes, scale, zero = quantize_codes(x, spec)
    assert codes.min().item() == 0 and codes.max().item() == 4
    assert zero.item() == 2  # unsigned codes: code 2 is the real zero
    assert scale.item() == pytest.approx(0.5)


@pytest.mark.parametrize("bits", BITS)
def test_bit_balance_grid_is_symmetric_for_any_bits(bits: int) -> None:
    spec = QuantSpec(bits, sym=True, bit_balance=True)
    assert spec.levels == 2**bits + 1
    assert spec.qmin == -spec.qmax == -(2 ** (bits - 1))
    x = sample((4, 300), seed=bits)
    for row, qrow in zip(x, fake_quant(x, spec), strict=True):
        amax = row.abs().max()
        values = qrow.unique()
        assert torch.allclose(values, -values.flip(0), atol=1e-6) or values.numel() < spec.levels
        grid = torch.arange(spec.qmin, spec.qmax + 1) * (amax / 2 ** (bits - 1))
        assert torch.allclose(grid, -grid.flip(0))
        dist = (qrow[:, None] - grid[None, :]).abs().min(dim=1).values
        assert dist.max() < 1e-5  # every value on the symmetric grid
        assert qrow.abs().max() == pytest.approx(amax.item())  # ±amax representable


def test_non_bit_balanced_two_bit_sym_is_lopsided() -> None:
    spec = QuantSpec(2, sym=True)
    assert (spec.qmin, spec.qmax, spec.levels, spec.storage_bits) == (-2, 1, 4, 2)


def test_symmetric_zero_is_zero_and_keeps_exact_zeros() -> None:
    x = sample((4, 32), seed=5)
    x[:, ::4] = 0.0
    spec = QuantSpec(3, sym=True)
    scale, zero = qparams(to_groups(x, -1), spec)
    assert torch.count_nonzero(zero) == 0
    assert torch.all(fake_quant(x, spec)[:, ::4] == 0)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_asymmetric_zero_point_is_an_integer_and_zero_is_exact(bits: int) -> None:
    x = sample((4, 32), seed=6) + 0.3  # off-centre ranges that still contain 0
    x[:, ::4] = 0.0
    spec = QuantSpec(bits, sym=False)
    scale, zero = qparams(to_groups(x, -1), spec)
    assert torch.equal(zero, zero.round())
    assert torch.all(zero >= 0) and torch.all(zero <= spec.levels - 1)
    assert torch.all(fake_quant(x, spec)[:, ::4] == 0)


def test_asymmetric_uses_the_range_symmetric_the_absolute_maximum() -> None:
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    asym = fake_quant(x, QuantSpec(2, sym=False))
    sym = fake_quant(x, QuantSpec(2, sym=True))
    assert torch.allclose(asym, x)  # 4 levels on [0, 3]: exact
    assert torch.allclose(sym, torch.tensor([[0.0, 0.0, 3.0, 3.0]]))  # step 3: {-6, -3, 0, 3}


def test_to_groups_consecutive_inputs() -> None:
    x = torch.arange(24.0).reshape(2, 12)
    g = to_groups(x, 4)
    assert g.shape == (2, 3, 4)
    assert torch.equal(g[1, 2], torch.tensor([20.0, 21.0, 22.0, 23.0]))
    assert to_groups(x, -1).shape == (2, 1, 12)
    assert to_groups(x, 0).shape == (1, 1, 24)
    assert to_groups(torch.zeros(2, 3, 12), -1).shape == (6, 1, 12)
    for group in (-1, 4, 12):
        assert torch.equal(from_groups(to_groups(x, group), x.shape), x)


def test_group_that_does_not_divide_is_rejected_unless_partial() -> None:
    x = torch.randn(3, 10)
    with pytest.raises(ValueError, match="does not divide 10"):
        to_groups(x, 4)
    g = to_groups(x, 4, partial=True)
    assert g.shape == (3, 3, 4)
    assert torch.equal(g[:, 2, :2], x[:, 8:10])
    assert torch.equal(g[:, 2, 2:], x[:, 9:10].expand(3, 2))  # padded with the last column
    assert torch.equal(g[:, 2].amin(-1), x[:, 8:].amin(-1))
    assert torch.equal(g[:, 2].amax(-1), x[:, 8:].amax(-1))
    assert torch.equal(from_groups(g, x.shape), x)


def test_partial_last_group_uses_only_its_own_columns() -> None:
    x = torch.zeros(1, 10)
    x[0, :8] = torch.linspace(-100, 100, 8)  # huge range in the full groups
    x[0, 8:] = torch.tensor([0.1, 0.4])
    xq = fake_quant(x, QuantSpec(2, False, 4, partial_group=True))
    assert torch.allclose(xq[0, 8:], x[0, 8:])  # 2 values, own range: exact


@pytest.mark.parametrize(("bits", "sym", "bb", "gran"), cases())
def test_codes_round_trip_equals_fake_quant(bits: int, sym: bool, bb: bool, gran: tuple) -> None:
    _, group, partial, shape = gran
    x = sample(shape, seed=11 * bits)
    spec = QuantSpec(bits, sym, group, bb, partial)
    codes, scale, zero = quantize_codes(x, spec)
    cols = shape[-1]
    assert codes.dtype == (torch.uint8 if spec.levels <= 256 else torch.int16)
    assert codes.shape == (x.numel() // cols, cols)
    assert int(codes.max()) <= spec.levels - 1
    size = cols if group <= 0 else group
    if group == 0:
        scale, zero = scale.expand(codes.shape[0], 1), zero.expand(codes.shape[0], 1)
    assert scale.shape == zero.shape == (codes.shape[0], -(-cols // size))
    assert torch.equal(zero, zero.round())
    back = dequantize_codes(codes, scale, zero, size).reshape(shape)
    assert torch.equal(back, fake_quant(x, spec))


@pytest.mark.parametrize("sym", [False, True])
def test_eight_bit_bit_balance_codes_round_trip(sym: bool) -> None:
    spec = QuantSpec(8, sym, -1, bit_balance=True)
    x = torch.linspace(-1, 1, 1000).reshape(2, 500)
    codes, scale, zero = quantize_codes(x, spec)
    assert int(codes.max()) == 256 and int(codes.min()) == 0  # 257 codes, none wrapped
    assert torch.equal(dequantize_codes(codes, scale, zero, 500), fake_quant(x, spec))


def test_explicit_range_clips_values_outside() -> None:
    x = torch.linspace(-2, 2, 41).reshape(1, -1)
    spec = QuantSpec(4, False, 0)
    xq = fake_quant(x, spec, torch.tensor(-1.0), torch.tensor(1.0))
    step = 2 / 15
    assert xq.min() >= -1 - step / 2 - 1e-6 and xq.max() <= 1 + step / 2 + 1e-6
    inside = x.abs() <= 1
    assert torch.all((xq - x)[inside].abs() <= step / 2 + 1e-6)


def test_constant_tensor_does_not_divide_by_zero() -> None:
    for spec in (QuantSpec(4, False), QuantSpec(4, True), QuantSpec(2, True, bit_balance=True)):
        for value in (0.0, 0.7):
            x = torch.full((2, 8), value)
            xq = fake_quant(x, spec)
            assert torch.isfinite(xq).all()
            assert torch.allclose(xq, x, atol=1e-6)


def test_per_tensor_on_a_matrix_uses_one_scale() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert torch.equal(from_groups(to_groups(x, 0), x.shape), x)
    assert torch.allclose(fake_quant(x, QuantSpec(2, False, 0)), x)


def test_asymmetric_bit_balance_matches_abq_llm_on_a_symmetric_range() -> None:
    """ABQ-LLM's W2*: asym, qmax 2**bits, scale range / 2**bits, zero round(-min / scale)."""
    spec = QuantSpec(2, sym=False, bit_balance=True)
    x = torch.linspace(-1, 1, 101).reshape(1, -1)
    values = fake_quant(x, spec).unique()
    assert torch.allclose(values, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    scale, zero = qparams(to_groups(x, -1), spec)
    assert scale.item() == pytest.approx(0.5) and zero.item() == 2


def test_bit_balance_configs_use_five_weight_levels() -> None:
    from abq_helpers import compose_run

    from abqlab.config import QuantConfig
    from abqlab.pipeline import typed
    from abqlab.quant.apply import act_spec, weight_spec

    for name, a_bits in (("w2bb-a16", None), ("w2bb-a8", 8)):
        quant = typed(compose_run([f"quant={name}"]).quant, QuantConfig)
        spec = weight_spec(quant)
        assert spec is not None and spec.levels == 5 and spec.bits == 2
        act = act_spec(quant)
        assert (act.bits if act else None) == a_bits
