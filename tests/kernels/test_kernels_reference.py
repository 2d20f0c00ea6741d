"""CPU reference of the kernel arithmetic: packing, per-token quantization, BTC / s8 cores."""

from __future__ import annotations

import itertools

import pytest
import torch

from abqlab.kernels import reference as ref

PAIRS = list(itertools.product(range(1, 9), range(1, 9)))  # (w_bits, a_bits)
ODD_SHAPES = [(1, 1, 1), (3, 5, 77), (9, 17, 513), (2, 33, 1000)]  # (M, N, K)


def _codes(rows: int, k: int, bits: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2**bits, (rows, k), generator=gen, dtype=torch.int32)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("k", [1, 31, 32, 255, 256, 257, 511, 512, 513, 1100])
def test_pack_unpack_roundtrip(bits: int, k: int) -> None:
    gen = torch.Generator().manual_seed(bits * 1000 + k)
    codes = _codes(3, k, bits, gen)
    planes = ref.pack_planes(codes, bits)
    assert planes.dtype == torch.int32
    assert planes.shape == (bits, 3, ref.padded_words(k))
    assert ref.padded_words(k) % 8 == 0  # 256-bit blocks
    assert ref.padded_words(k) * 32 - k < 256
    assert torch.equal(ref.unpack_planes(planes, k), codes.long())
    # pad bits beyond k are zero
    full = ref.unpack_planes(planes, ref.padded_words(k) * 32)
    assert int(full[:, k:].abs().sum()) == 0


def test_pack_layout_bit_order() -> None:
    codes = torch.zeros(1, 64, dtype=torch.int32)
    codes[0, 0] = 1  # plane 0, word 0, bit 0
    codes[0, 33] = 2  # plane 1, word 1, bit 1
    codes[0, 31] = 3  # planes 0 and 1, word 0, bit 31 (sign bit of the int32)
    planes = ref.pack_planes(codes, 2)
    assert int(planes[0, 0, 0]) == 1 - 2**31
    assert int(planes[1, 0, 0]) == -(2**31)
    assert int(planes[1, 0, 1]) == 2


def test_pack_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        ref.pack_planes(torch.tensor([[4]]), 2)


def test_popcount32() -> None:
    vals = torch.tensor([0, 1, 3, -1, 2**31 - 1, -(2**31), 0x0F0F0F0F], dtype=torch.int32)
    expect = [bin(int(v) & 0xFFFFFFFF).count("1") for v in vals]
    assert ref.popcount32(vals).tolist() == expect


@pytest.mark.parametrize(("w_bits", "a_bits"), PAIRS)
def test_btc_equals_integer_matmul(w_bits: int, a_bits: int) -> None:
    """sum_ij 2^(i+j) popc(A_i & W_j) == A_u @ W_u^T exactly, every (W, A), odd shapes."""
    gen = torch.Generator().manual_seed(w_bits * 8 + a_bits)
    for m, n, k in ODD_SHAPES:
        a = _codes(m, k, a_bits, gen)
        w = _codes(n, k, w_bits, gen)
        got = ref.btc_dot(ref.pack_planes(a, a_bits), ref.pack_planes(w, w_bits))
        assert torch.equal(got, ref.int_dot(a, w)), (m, n, k)


@pytest.mark.parametrize("w_bits", range(1, 9))
def test_s8_arithmetic_equals_integer_matmul(w_bits: int) -> None:
    gen = torch.Generator().manual_seed(w_bits)
    for m, n, k in ODD_SHAPES:
        a = _codes(m, k, 8, gen)
        w = _codes(n, k, w_bits, gen)
        assert torch.equal(ref.s8_dot(a, w, w_bits), ref.int_dot(a, w))


def test_extreme_codes_exact() -> None:
    k = 1000
    a = torch.full((2, k), 255, dtype=torch.int32)
    w = torch.full((3, k), 255, dtype=torch.int32)
    expect = torch.full((2, 3), 255 * 255 * k, dtype=torch.int64)
    assert torch.equal(ref.btc_dot(ref.pack_planes(a, 8), ref.pack_planes(w, 8)), expect)
    assert torch.equal(ref.s8_dot(a, w, 8), expect)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("sym", [False, True])
def test_quantize_act_definition(bits: int, sym: bool) -> None:
    if sym and bits < 2:
        with pytest.raises(ValueError):
            ref.quantize_act(torch.zeros(1, 4), bits, sym)
        return
    gen = torch.Generator().manual_seed(bits)
    x = (torch.randn(7, 301, generator=gen) * 3).to(torch.float16)
    x[0] = 0.0  # constant row: scale clamps at 1e-8
    x[1] = x[1].abs() + 1  # all positive: asym zero point goes negative
    aq = ref.quantize_act(x, bits, sym)
    xf = x.float()
    assert aq.codes.min() >= 0 and aq.codes.max() <= 2**bits - 1
    if sym:
        half = 2 ** (bits - 1)
        scale = xf.abs().amax(1).clamp(min=1e-8) / (half - 1)
        q = torch.clamp(torch.round(xf / scale[:, None]), -half, half - 1) + half
        assert torch.equal(aq.zero, torch.full((7,), half, dtype=torch.int32))
    else:
        xmin, xmax = xf.amin(1), xf.amax(1)
        scale = (xmax - xmin).clamp(min=1e-8) / (2**bits - 1)
        zero = torch.round(-xmin / scale)
        q = torch.clamp(torch.round(xf / scale[:, None]) + zero[:, None], 0, 2**bits - 1)
        assert torch.equal(aq.zero, zero.to(torch.int32))
    assert torch.equal(aq.scale, scale)
    assert torch.equal(aq.codes, q.to(torch.int32))
    deq = (aq.codes - aq.zero[:, None]).float() * aq.scale[:, None]
    inside = (xf >= deq - aq.scale[:, None]) & (xf <= deq + aq.scale[:, None])
    if not sym:  # asym covers [min, max]: error at most half a step (plus rounding slack)
        assert bool(inside[2:].all())


def test_storage_bits() -> None:
    assert ref.storage_bits(2) == 1
    assert ref.storage_bits(4) == 2
    assert ref.storage_bits(5) == 3  # W2* bit balance
    assert ref.storage_bits(256) == 8
    with pytest.raises(ValueError):
        ref.storage_bits(257)


def test_int_epilogue_matches_dequantized_product() -> None:
    gen = torch.Generator().manual_seed(0)
    m, n, k = 5, 6, 300
    a = _codes(m, k, 4, gen)
    w = _codes(n, k, 3, gen)
    sa, sw = torch.rand(m, generator=gen) + 0.1, torch.rand(n, generator=gen) + 0.1
    za = torch.randint(-3, 12, (m,), generator=gen, dtype=torch.int32)
    zw = torch.randint(0, 7, (n,), generator=gen, dtype=torch.int32)
    bias = torch.randn(n, generator=gen)
    y = ref.int_epilogue(ref.int_dot(a, w), sa, za, a.sum(1), sw, zw, w.sum(1), k, bias)
    xa = (a - za[:, None]).double() * sa.double()[:, None]
    xw = (w - zw[:, None]).double() * sw.double()[:, None]
    torch.testing.assert_close(y, xa @ xw.T + bias.double(), rtol=1e-12, atol=1e-9)
