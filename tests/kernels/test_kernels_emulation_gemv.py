"""Python mirror of the GEMV unpackers (csrc/include/abq/unpack.cuh) and of a GEMV warp tile
(gemv_cores.cuh: trips, quad-thread word chunks, shared-memory offsets, MMA operand order),
checked bit for bit against the reference. Runs without nvcc; the C++ harness
(test_kernels_harness.py) runs the kernels' own source the same way when nvcc is present.
"""

from __future__ import annotations

import pytest
import torch
from test_kernels_emulation import U32, G, T, _to_matrix, mma_f16, mma_s8

from abqlab.kernels import reference as ref

MASKS = ((1, 0x55555555), (2, 0x33333333), (4, 0x0F0F0F0F))


def field_bits(q: int) -> int:
    return 2 if q <= 2 else (4 if q <= 4 else 8)


def act_klo(q: int, pi: int) -> int:
    n = field_bits(q)
    return n * (pi % (16 // n)) + pi // (16 // n)


def transpose(planes: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Delta-swap network: field f of word r = code of weight n*f + r."""
    w = [p & U32 for p in planes] + [torch.zeros_like(planes[0])] * (n - len(planes))
    for d, m in MASKS:
        if d >= n:
            break
        for j in range(n):
            if j & d == 0 and j + d < n:
                a, b = w[j], w[j + d]
                w[j] = (a & m) | ((b << d) & ~m & U32)
                w[j + d] = ((a >> d) & m) | (b & ~m & U32)
    return w


def _h2f(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    b = bits & 0xFFFF
    return torch.where(b >= 2**15, b - 2**16, b).to(torch.int16).view(dtype).float()


def _f2h(f: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return f.to(dtype).view(torch.int16).to(torch.int64) & 0xFFFF


def hop2(a: torch.Tensor, b: torch.Tensor, op, dtype: torch.dtype) -> torch.Tensor:
    """Packed 2 x dtype op through fp32 (exact here: integer differences, 8-bit x scale)."""
    lo = op(_h2f(a, dtype), _h2f(b, dtype))
    hi = op(_h2f(a >> 16, dtype), _h2f(b >> 16, dtype))
    return _f2h(lo, dtype) | (_f2h(hi, dtype) << 16)


def a16_pairs(planes: list[torch.Tensor], q: int, dtype: torch.dtype, sz: torch.Tensor
              ) -> list[torch.Tensor]:
    """A16Unpack::pairs: 16 packed pairs from q plane words and (scale, zero) bits."""
    bf16 = dtype == torch.bfloat16
    n = field_bits(q)
    h = 16 // n
    w = transpose(planes, n)
    out: list[torch.Tensor] = [torch.zeros(0)] * 16
    if bf16 and q == 8:  # fp32 route: 2^23 + byte - (2^23 + z), times s, rounded once
        s, z = _h2f(sz, dtype), _h2f(sz >> 16, dtype)
        for r in range(n):
            for f in range(h):
                lo = (((w[r] >> (8 * f)) & 0xFF).float() + 2**23 - (2**23 + z)) * s
                hi = (((w[r] >> (8 * f + 16)) & 0xFF).float() + 2**23 - (2**23 + z)) * s
                out[r * h + f] = _f2h(lo, dtype) | (_f2h(hi, dtype) << 16)
        return out
    mant = 7 if bf16 else 10
    n_fit = (mant - max(q, 2)) // n + 1  # fields read per shift

    def magic(p: int) -> int:
        return ((134 - p) << 7 if bf16 else (25 - p) << 10) * 0x10001

    s2 = (sz & 0xFFFF) * 0x10001
    z2 = (sz >> 16) * 0x10001
    c = [hop2(z2, torch.full_like(sz, magic(n * i)), torch.add, dtype) for i in range(n_fit)]
    for r in range(n):
        for f in range(h):
            i, sh = f % n_fit, n * n_fit * (f // n_fit)
            p = n * i
            mask = ((1 << n) - 1) * 0x10001 << p
            x = ((w[r] >> sh) & mask) | magic(p)
            out[r * h + f] = hop2(hop2(x, c[i], torch.sub, dtype), s2, torch.mul, dtype)
    return out


def _planes(codes: torch.Tensor, q: int) -> list[torch.Tensor]:
    """[n, 32] codes -> q plane words [n] (int64)."""
    b = torch.arange(32)
    return [(((codes >> j) & 1) << b).sum(1) for j in range(q)]


@pytest.mark.parametrize("q", range(1, 9))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a16_unpack_mirror_bit_exact(q: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(q)
    n = 128
    codes = torch.randint(0, 2**q, (n, 32), generator=gen)
    zlim = 128 if dtype == torch.bfloat16 else 1024
    zero = torch.randint(-zlim, zlim + 1, (n,), generator=gen)
    scale = torch.exp2(torch.empty(n).uniform_(-16, 2, generator=gen)).to(dtype)
    sz = _f2h(scale.float(), dtype) | (_f2h(zero.float(), dtype) << 16)
    got = a16_pairs(_planes(codes, q), q, dtype, sz)
    wq = _f2h((codes.float() - zero.float()[:, None]) * scale.float()[:, None], dtype)
    for pi in range(16):
        lo = act_klo(q, pi)
        assert torch.equal(got[pi], wq[:, lo] | (wq[:, lo + 16] << 16)), pi


@pytest.mark.parametrize("q", range(1, 9))
def test_s8_unpack_mirror_bit_exact(q: int) -> None:
    codes = torch.randint(0, 2**q, (64, 32), generator=torch.Generator().manual_seed(q))
    planes = _planes(codes, q)
    if q == 8:
        planes[7] = ~planes[7] & U32
    words = transpose(planes, 8)
    for r in range(8):
        for c in range(4):
            expect = codes[:, 8 * c + r] ^ (0x80 if q == 8 else 0)
            assert torch.equal((words[r] >> (8 * c)) & 0xFF, expect)


def _a16_tile(x: torch.Tensor, w: torch.Tensor, sz: torch.Tensor, q: int,
              dtype: torch.dtype) -> torch.Tensor:
    """One warp (16 channels x 8 tokens) over all of K, as GemvA16::compute walks it: in trip
    j quad thread t owns words [4 kW j + kW t, + kW); per word, pairs of rows g and g + 8 and
    MMA i takes pairs 2i, 2i+1 with the activation pairs (x[klo], x[klo + 16]) of the same pi.
    """
    kw_words = 4 if q <= 2 else 2
    k = w.shape[1]
    words = -(-k // 32)
    trips = -(-words // (4 * kw_words))
    planes = ref.pack_planes(w, q).to(torch.int64) & U32  # [q, 16, kw]
    planes = torch.nn.functional.pad(planes, (0, trips * 4 * kw_words - planes.shape[2]))
    xb = torch.nn.functional.pad(x.view(torch.int16).to(torch.int64) & 0xFFFF,
                                 (0, 32 * planes.shape[2] - k))
    acc = torch.zeros(32, 4, dtype=torch.float64)
    for trip in range(trips):
        for u in range(kw_words):
            wr = 4 * kw_words * trip + kw_words * T + u  # [32] relative word of each lane
            pr = [[planes[j, G + 8 * r, wr] for j in range(q)] for r in range(2)]
            a = [a16_pairs(pr[r], q, dtype, sz[G + 8 * r]) for r in range(2)]
            for i in range(8):
                b = []
                for pi in (2 * i, 2 * i + 1):
                    klo = 32 * wr + act_klo(q, pi)
                    b.append(xb[G, klo] | (xb[G, klo + 16] << 16))
                frag = torch.stack([a[0][2 * i], a[1][2 * i], a[0][2 * i + 1], a[1][2 * i + 1]],
                                   1)
                acc += mma_f16(frag, torch.stack(b, 1)) if dtype == torch.float16 else \
                    _mma_bf16(frag, torch.stack(b, 1))
    return acc


def _mma_bf16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mma_f16 of the emulation module, reading the halves as bf16."""
    from test_kernels_emulation import _c_frag, _mma

    amat, bmat = _mma(a, b, 2, 16, 8)
    to_f = lambda m: m.to(torch.int16).view(torch.bfloat16).double()  # noqa: E731
    return _c_frag(to_f(amat) @ to_f(bmat))


@pytest.mark.parametrize(("q", "dtype"), [(2, torch.float16), (4, torch.bfloat16),
                                          (8, torch.bfloat16), (3, torch.float16)])
def test_a16_warp_tile_mirror(q: int, dtype: torch.dtype) -> None:
    """Per-channel weights, K spanning several trips and a partial word: the tile equals
    x @ dequant(W)^T computed from the reference."""
    gen = torch.Generator().manual_seed(q)
    k = 1000
    w = torch.randint(0, 2**q, (16, k), generator=gen)
    scale = ((torch.rand(16, generator=gen) + 0.5) / 2**q).to(dtype)
    zero = torch.randint(0, 2**q, (16,), generator=gen).float()
    x = torch.randn(8, k, generator=gen).to(dtype)
    sz = _f2h(scale.float(), dtype) | (_f2h(zero, dtype) << 16)
    got = _to_matrix(_a16_tile(x, w, sz, q, dtype))
    wd = ref.dequant_weight_as(w, scale.float()[:, None], zero[:, None], k, dtype).double()
    torch.testing.assert_close(got, x.double() @ wd.T, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("q", [1, 2, 5, 8])
def test_s8_warp_tile_mirror(q: int) -> None:
    """s8: byte-words (2i, 2i+1) of rows g, g+8 against activation registers holding
    bytes 8c + r (the shared-memory order), plus the exact shift correction."""
    gen = torch.Generator().manual_seed(q)
    k = 800
    w = torch.randint(0, 2**q, (16, k), generator=gen)
    a = torch.randint(0, 256, (8, k), generator=gen)
    kw_words = 4 if q <= 4 else 2
    trips = -(-ref.padded_words(k) // (4 * kw_words))
    planes = ref.pack_planes(w, q).to(torch.int64) & U32
    planes = torch.nn.functional.pad(planes, (0, trips * 4 * kw_words - planes.shape[2]))
    ab = torch.nn.functional.pad((a - 128) & 0xFF, (0, 32 * planes.shape[2] - k))
    acc = torch.zeros(32, 4, dtype=torch.int64)
    for trip, u in ((j, u) for j in range(trips) for u in range(kw_words)):
        word = 4 * kw_words * trip + kw_words * T + u  # [32]: each quad thread its own word
        wb = []
        for r in range(2):
            pl = [planes[j, G + 8 * r, word] for j in range(q)]
            if q == 8:
                pl[7] = ~pl[7] & U32
            wb.append(transpose(pl, 8))
        for i in range(4):
            regs = [sum(ab[G, 32 * word + 8 * c + rr] << (8 * c) for c in range(4))
                    for rr in (2 * i, 2 * i + 1)]
            frag = torch.stack([wb[0][2 * i], wb[1][2 * i], wb[0][2 * i + 1], wb[1][2 * i + 1]],
                               1)
            acc += mma_s8(frag, torch.stack(regs, 1))
    cw = 128 if q == 8 else 0
    tok = torch.stack([2 * T, 2 * T + 1, 2 * T, 2 * T + 1], 1)
    ch = torch.stack([G, G, G + 8, G + 8], 1)
    fixed = acc + cw * a.sum(1)[tok] + 128 * w.sum(1)[ch] - 128 * cw * k
    assert torch.equal(_to_matrix(fixed), ref.int_dot(a, w))
