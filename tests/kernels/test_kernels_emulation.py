"""Lane-level emulation of the CUDA cores' index math (no GPU).

Each ``mma_*`` below implements the PTX ``mma.sync`` fragment layout (lane = 4g + t; a0/a2 row
g, a1/a3 row g+8; a0/a1 first k-half of thread t, a2/a3 second; b0/b1 the same k-halves of
column g; c0..c3 = (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)). The ``*_tile`` functions mirror
``csrc/include/abq/gemm.cuh`` line by line for one warp tile (16 channels x 8 tokens), so the
k-permutation argument, the byte/half unpacking and the s8 correction are checked here; the
CUDA transcription itself is checked by the GPU tests.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from abqlab.kernels import reference as ref

LANES = torch.arange(32)
G, T = LANES // 4, LANES % 4
U32 = 0xFFFFFFFF


def _bits(words: torch.Tensor, n: int, width: int) -> torch.Tensor:
    """[32, regs] words -> [32, regs, n] fields of ``width`` bits (little-endian)."""
    sh = torch.arange(n) * width
    return (words[..., None] >> sh) & ((1 << width) - 1)


def _mma(a: torch.Tensor, b: torch.Tensor, per: int, width: int,
         kt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generic m16n8 MMA over fragments: ``per`` elements of ``width`` bits per register; the
    second k-half starts at ``kt``. Returns the dense A [16, 2kt] and B [2kt, 8]."""
    ka = _bits(a, per, width)  # [32, 4, per]
    kb = _bits(b, per, width)  # [32, 2, per]
    amat = torch.zeros(16, 2 * kt, dtype=torch.int64)
    bmat = torch.zeros(2 * kt, 8, dtype=torch.int64)
    for lane in range(32):
        g, t = int(G[lane]), int(T[lane])
        for r, (row, half) in enumerate(((g, 0), (g + 8, 0), (g, 1), (g + 8, 1))):
            amat[row, half * kt + t * per: half * kt + (t + 1) * per] = ka[lane, r]
        for r in range(2):
            bmat[r * kt + t * per: r * kt + (t + 1) * per, g] = kb[lane, r]
    return amat, bmat


def _c_frag(c: torch.Tensor) -> torch.Tensor:
    return torch.stack([c[G, 2 * T], c[G, 2 * T + 1], c[G + 8, 2 * T], c[G + 8, 2 * T + 1]], 1)


def mma_b1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    amat, bmat = _mma(a, b, 32, 1, 128)
    return _c_frag(amat @ bmat)  # and.popc == dot product of 0/1 vectors


def mma_s8(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    amat, bmat = _mma(a, b, 4, 8, 16)
    return _c_frag(torch.where(amat > 127, amat - 256, amat) @ torch.where(bmat > 127, bmat - 256,
                                                                          bmat))


def mma_f16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    amat, bmat = _mma(a, b, 2, 16, 8)
    to_f = lambda m: m.to(torch.int16).view(torch.float16).double()  # noqa: E731
    return _c_frag(to_f(amat) @ to_f(bmat))


def spread4(n: torch.Tensor) -> torch.Tensor:
    return (n * 0x00204081) & 0x01010101


def _pad_words(words: torch.Tensor) -> torch.Tensor:
    """Rows are padded to 256 bits; the GEMM kernels walk 512-bit blocks and load the missing
    half of the last one as zeros (predicated): emulate by zero-extending to 16-word blocks."""
    kw = words.shape[-1]
    return torch.nn.functional.pad(words, (0, -kw % 16))


def _w_frag(planes: torch.Tensor, kb: int) -> torch.Tensor:
    """load_w: [q, 2 rows, 32 lanes, 4 words] (rows g and g+8, words 4t..4t+3 of block kb)."""
    words = _pad_words(planes.to(torch.int64) & U32)  # [q, 16, kw16]
    idx = kb * 16 + 4 * T[:, None] + torch.arange(4)  # [32, 4]
    return torch.stack([words[:, G[:, None], idx], words[:, G[:, None] + 8, idx]], 1)


def codes4(wf: torch.Tensor, row: int, wi: int, off: int) -> torch.Tensor:
    v = torch.zeros(32, dtype=torch.int64)
    for j in range(wf.shape[0]):
        v |= spread4((wf[j, row, :, wi] >> off) & 0xF) << j
    return v


def btc_tile(a_planes: torch.Tensor, w_planes: torch.Tensor) -> torch.Tensor:
    p, q, kw = a_planes.shape[0], w_planes.shape[0], w_planes.shape[2]
    acc = torch.zeros(p + q - 1, 32, 4, dtype=torch.int64)
    aw = _pad_words(a_planes.to(torch.int64) & U32)
    for kb in range(-(-kw // 16)):
        wf = _w_frag(w_planes, kb)
        for i in range(p):
            af = aw[i, G[:, None], kb * 16 + 4 * T[:, None] + torch.arange(4)]  # [32, 4]
            for j in range(q):
                for h in (0, 2):
                    a = torch.stack([wf[j, 0, :, h], wf[j, 1, :, h], wf[j, 0, :, h + 1],
                                     wf[j, 1, :, h + 1]], 1)
                    acc[i + j] += mma_b1(a, af[:, h: h + 2])
    return sum(acc[s] << s for s in range(p + q - 1))


def s8_tile(a_i8: torch.Tensor, w_planes: torch.Tensor, a_sum: torch.Tensor,
            w_sum: torch.Tensor, k: int) -> torch.Tensor:
    q, kw = w_planes.shape[0], w_planes.shape[2]
    flip, cw = (0x80808080, 128) if q == 8 else (0, 0)
    acc = torch.zeros(32, 4, dtype=torch.int64)
    abytes = torch.nn.functional.pad(a_i8.to(torch.int64) & 0xFF, (0, 32 * (-kw % 16)))
    for kb in range(-(-kw // 16)):
        wf = _w_frag(w_planes, kb)
        for wi in range(4):
            kbyte = 32 * (kb * 16 + 4 * T + wi)  # [32]
            chunk = abytes[G[:, None], kbyte[:, None] + torch.arange(32)]  # [32, 32 bytes]
            av = (chunk.view(32, 8, 4) << (8 * torch.arange(4))).sum(-1)  # 8 u32 per lane
            for c in range(4):
                a = torch.stack([codes4(wf, 0, wi, 8 * c) ^ flip, codes4(wf, 1, wi, 8 * c) ^ flip,
                                 codes4(wf, 0, wi, 8 * c + 4) ^ flip,
                                 codes4(wf, 1, wi, 8 * c + 4) ^ flip], 1)
                acc += mma_s8(a, av[:, 2 * c: 2 * c + 2])
    tok = torch.stack([2 * T, 2 * T + 1, 2 * T, 2 * T + 1], 1)
    ch = torch.stack([G, G, G + 8, G + 8], 1)
    return acc + cw * a_sum[tok] + 128 * w_sum[ch] - 128 * cw * k  # fix()


def a16_tile(x: torch.Tensor, w_planes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
             gs: int) -> torch.Tensor:
    """scale / zero as stored (fp16 values); the kernel computes in fp32 and rounds once."""
    kw, groups = w_planes.shape[2], scale.shape[1]
    acc = torch.zeros(32, 4, dtype=torch.float64)
    xs = x.view(torch.int16).to(torch.int64) & 0xFFFF
    xs = torch.nn.functional.pad(xs, (0, 32 * (kw + -kw % 16) - xs.shape[1]))
    scale, zero = scale.float(), zero.float()
    for kb in range(-(-kw // 16)):
        wf = _w_frag(w_planes, kb)
        for wi in range(4):
            kbase = 32 * (kb * 16 + 4 * T + wi)
            grp = torch.clamp(kbase // gs, max=groups - 1)
            s0, z0, s1, z1 = scale[G, grp], zero[G, grp], scale[G + 8, grp], zero[G + 8, grp]
            xv = xs[G[:, None], kbase[:, None] + torch.arange(32)]  # 32 halves
            xw = xv[:, 0::2] | (xv[:, 1::2] << 16)  # 16 u32 per lane

            def deq2(v: torch.Tensor, b: int, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                lo = (((v >> (8 * b)) & 0xFF).float() - z) * s
                hi = (((v >> (8 * b + 8)) & 0xFF).float() - z) * s
                h = torch.stack([lo, hi], 1).to(torch.float16).view(torch.int16).to(torch.int64)
                return (h[:, 0] & 0xFFFF) | ((h[:, 1] & 0xFFFF) << 16)

            for c in range(8):
                v0, v1 = codes4(wf, 0, wi, 4 * c), codes4(wf, 1, wi, 4 * c)
                a = torch.stack([deq2(v0, 0, z0, s0), deq2(v1, 0, z1, s1), deq2(v0, 2, z0, s0),
                                 deq2(v1, 2, z1, s1)], 1)
                acc += mma_f16(a, xw[:, 2 * c: 2 * c + 2])
    return acc


def _to_matrix(frag: torch.Tensor) -> torch.Tensor:
    """C fragments [32, 4] -> [tokens 8, channels 16] as the epilogue writes them."""
    out = torch.zeros(8, 16, dtype=frag.dtype)
    for r in range(4):
        out[2 * T + (r & 1), G + (8 if r >= 2 else 0)] = frag[:, r]
    return out


@pytest.mark.parametrize(("w_bits", "a_bits"), [(1, 1), (2, 8), (3, 5), (8, 8), (5, 2)])
def test_btc_tile_emulation(w_bits: int, a_bits: int) -> None:
    gen = torch.Generator().manual_seed(w_bits * 9 + a_bits)
    k = 700  # 24 words: a full 512-bit block, then half a block (256-bit padding)
    a = torch.randint(0, 2**a_bits, (8, k), generator=gen)
    w = torch.randint(0, 2**w_bits, (16, k), generator=gen)
    got = _to_matrix(btc_tile(ref.pack_planes(a, a_bits), ref.pack_planes(w, w_bits)))
    assert torch.equal(got, ref.int_dot(a, w))


@pytest.mark.parametrize("w_bits", [1, 3, 7, 8])
def test_s8_tile_emulation(w_bits: int) -> None:
    gen = torch.Generator().manual_seed(w_bits)
    k = 600
    a = torch.randint(0, 256, (8, k), generator=gen)
    w = torch.randint(0, 2**w_bits, (16, k), generator=gen)
    a_i8 = torch.zeros(8, 32 * ref.padded_words(k), dtype=torch.int64)
    a_i8[:, :k] = a - 128
    got = _to_matrix(s8_tile(a_i8, ref.pack_planes(w, w_bits), a.sum(1), w.sum(1), k))
    assert torch.equal(got, ref.int_dot(a, w))


@pytest.mark.parametrize(("w_bits", "gs"), itertools.product([2, 4, 8], [128, 600]))
def test_a16_tile_emulation(w_bits: int, gs: int) -> None:
    gen = torch.Generator().manual_seed(w_bits)
    k = 600
    groups = -(-k // gs)
    w = torch.randint(0, 2**w_bits, (16, k), generator=gen)
    scale = (torch.rand(16, groups, generator=gen) / 2**w_bits).half()
    zero = torch.randint(0, 2**w_bits, (16, groups), generator=gen).half()
    x = torch.randn(8, k, generator=gen).half()
    got = _to_matrix(a16_tile(x, ref.pack_planes(w, w_bits), scale, zero, gs))
    wd = ref.dequant_weight_as(w, scale.float(), zero.float(), gs, torch.float16).double()
    torch.testing.assert_close(got, x.double() @ wd.T, rtol=1e-9, atol=1e-9)
