"""The GEMV kernels' own code, run on the CPU (tests/kernels/host_harness.cu, built by nvcc).

Checked bit for bit against the Python reference: the A16 unpacker (magic-number dequant) for
every W and both half types, the s8 unpacker, the shared activation quantizer, and whole GEMV
problems through the kernel's plan, loads, split-K partials and epilogue: multi-trip shapes
(1, 40, 9000) and (8, 33, 11008), W8A8 at K = 28672, fused activation quantization, odd N,
A16 activations wider than K (the padding must not count), activation clip ratios < 1.
Integer results are exact; fp16/bf16 outputs are recomputed with the kernel's own fp32 formula
and compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness import GemvCase, bits16, build_harness, float_bits, run, run_gemv

from abqlab.kernels import reference as ref

pytestmark = pytest.mark.nvcc


@pytest.fixture(scope="module")
def exe():
    path = build_harness()
    if path is None:
        pytest.skip("nvcc not found")
    return path


def field_bits(q: int) -> int:
    return 2 if q <= 2 else (4 if q <= 4 else 8)


def act_klo(q: int, pi: int) -> int:
    """Mirror of unpack.cuh act_klo: low weight of A16 pair pi (the high one is +16)."""
    n = field_bits(q)
    h = 16 // n
    return n * (pi % h) + pi // h


def _plane_words(codes: torch.Tensor, q: int) -> np.ndarray:
    """[n, 32] codes -> [n, q] plane words (bit b of plane j = bit j of code b)."""
    c = codes.numpy().astype(np.uint64)
    out = np.zeros((codes.shape[0], q), dtype=np.uint64)
    for j in range(q):
        out[:, j] = (((c >> j) & 1) << np.arange(32, dtype=np.uint64)).sum(1)
    return out.astype(np.uint32)


@pytest.mark.parametrize("q", range(1, 9))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_unpack_a16_bit_exact(exe, q: int, dtype: torch.dtype) -> None:
    """Pair pi = (round_T((q - z) s), same at k + 16), s and z stored in T."""
    gen = torch.Generator().manual_seed(q)
    n = 192
    codes = torch.randint(0, 2**q, (n, 32), generator=gen)
    zlim = 128 if dtype == torch.bfloat16 else 1024
    zero = torch.randint(0, 2**q, (n,), generator=gen)
    zero[:16] = torch.tensor([-zlim, zlim, -1, 2**q - 1] * 4)  # the exactness range's ends
    scale = torch.exp2(torch.empty(n).uniform_(-18, 3, generator=gen)).to(dtype)  # + subnormal
    z_t = zero.float().to(dtype)
    assert torch.equal(z_t.float(), zero.float())
    sz = bits16(scale).astype(np.uint32) | (bits16(z_t).astype(np.uint32) << 16)
    rec = np.concatenate([_plane_words(codes, q), sz[:, None]], 1)
    kind = 0 if dtype == torch.float16 else 1
    out = np.frombuffer(run(exe, [1, q, kind, n], [rec]), dtype=np.uint32).reshape(n, 16)
    w = ((codes.float() - zero.float()[:, None]) * scale.float()[:, None]).to(dtype)
    wbits = bits16(w).astype(np.uint32)
    for pi in range(16):
        lo = act_klo(q, pi)
        assert 0 <= lo < 16
        expect = wbits[:, lo] | (wbits[:, lo + 16] << 16)
        assert np.array_equal(out[:, pi], expect), (q, pi)


@pytest.mark.parametrize("q", range(1, 9))
def test_unpack_s8_bit_exact(exe, q: int) -> None:
    """Byte c of byte-word r = code of weight 8c + r (code - 128 for 8-bit weights)."""
    gen = torch.Generator().manual_seed(10 + q)
    n = 64
    codes = torch.randint(0, 2**q, (n, 32), generator=gen)
    out = np.frombuffer(run(exe, [1, q, 2, n], [_plane_words(codes, q)]), dtype=np.uint32)
    got = out.reshape(n, 8).view(np.uint8).reshape(n, 8, 4)  # [record, r, c]
    expect = codes.numpy().reshape(n, 4, 8).transpose(0, 2, 1)  # [record, r, c] = 8c + r
    if q == 8:
        expect = expect ^ 0x80
    assert np.array_equal(got, expect.astype(np.uint8))


@pytest.mark.parametrize(("bits", "sym"), [(8, False), (8, True), (4, True), (2, False),
                                           (1, False), (5, True)])
@pytest.mark.parametrize("clip", [1.0, 0.9, 0.37])
def test_quantizer_matches_reference(exe, bits: int, sym: bool, clip: float) -> None:
    gen = torch.Generator().manual_seed(bits)
    x = (torch.randn(5, 333, generator=gen) * 3).to(torch.float16).float()
    x[0, :100] = 0.5  # ties
    x[1] = 0.0  # constant row
    m, k = x.shape
    data = run(exe, [2, m, k, bits, int(sym), float_bits(clip)], [x.numpy()])
    scale = np.frombuffer(data[:4 * m], dtype=np.float32)
    zero = np.frombuffer(data[4 * m:8 * m], dtype=np.int32)
    codes = np.frombuffer(data[8 * m:], dtype=np.int32).reshape(m, k)
    aq = ref.quantize_act(x, bits, sym, clip)
    assert np.array_equal(scale, aq.scale.numpy())
    assert np.array_equal(zero, aq.zero.numpy())
    assert np.array_equal(codes, aq.codes.numpy())


# ------------------------------------------------------------------ whole GEMV problems
def _inputs(c: GemvCase) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(c.seed + 97 * c.w_bits + c.a_bits)
    t: dict[str, torch.Tensor] = {}
    t["w"] = torch.randint(0, 2**c.w_bits, (c.n, c.k), generator=gen, dtype=torch.int32)
    t["bias"] = torch.randn(c.n, generator=gen)
    stride = c.k + c.x_pad
    if c.path == "a16":
        groups = -(-c.k // (c.group or c.k))
        t["scale"] = ((torch.rand(c.n, groups, generator=gen) + 0.5) / 2**c.w_bits).to(c.dtype)
        t["zero"] = torch.randint(0, 2**c.w_bits, (c.n, groups), generator=gen).to(c.dtype)
        x = torch.randn(c.m, stride, generator=gen)
        x[:, c.k:] = 3e4  # junk beyond K: must not contribute
        t["x"] = x.to(c.dtype)
        return t
    t["w_scale"] = (torch.rand(c.n, generator=gen) + 0.01) * 50 / (c.k * 2**c.w_bits)
    t["w_zero"] = torch.randint(0, 2**c.w_bits, (c.n,), generator=gen, dtype=torch.int32)
    t["w_sum"] = t["w"].sum(1, dtype=torch.int32)
    if c.fused:
        x = torch.randn(c.m, stride, generator=gen) * 3
        x[:, c.k:] = 1e4
        t["x"] = x.to(c.dtype)
        return t
    a = torch.randint(0, 2**c.a_bits, (c.m, c.k), generator=gen, dtype=torch.int32)
    t["codes"] = a
    if c.path == "s8":
        a8 = torch.zeros(c.m, 32 * ref.padded_words(c.k), dtype=torch.int8)
        a8[:, :c.k] = (a - 128).to(torch.int8)
        t["a"] = a8
    else:
        t["a"] = ref.pack_planes(a, c.a_bits)
    t["a_scale"] = torch.rand(c.m, generator=gen) + 0.01
    t["a_zero"] = torch.randint(-5, 20, (c.m,), generator=gen, dtype=torch.int32)
    t["a_sum"] = a.sum(1, dtype=torch.int32)
    return t


def _kernel_float(e: torch.Tensor, sa: torch.Tensor, za: torch.Tensor, t: dict, k: int,
                  dtype: torch.dtype) -> torch.Tensor:
    """gemv_store's fp32 formula: (sa * sw) * float(E - za (SW - K zw)) + bias -> dtype."""
    sw, zw, swsum = t["w_scale"], t["w_zero"].long(), t["w_sum"].long()
    f = e - za.long()[:, None] * (swsum - k * zw)[None, :]
    y = (sa[:, None] * sw[None, :]) * f.to(torch.float32) + t["bias"][None, :]
    return y.to(dtype)


def _check(exe, c: GemvCase) -> None:
    t = _inputs(c)
    r = run_gemv(exe, c, t)
    w = t["w"].long()
    kcw = 128 if (c.path == "s8" and c.w_bits == 8) else 0
    ksa = 128 if c.path == "s8" else 0
    sw = t.get("w_sum", torch.zeros(c.n)).long()
    if c.path == "a16":
        wd = ((w.float() - t["zero"].float().repeat_interleave(c.group or c.k, 1)[:, :c.k])
              * t["scale"].float().repeat_interleave(c.group or c.k, 1)[:, :c.k]).to(c.dtype)
        expect = t["x"][:, :c.k].double() @ wd.double().T
        torch.testing.assert_close(r.raw, expect, rtol=1e-12, atol=1e-9)
        y = (expect.float() + t["bias"]).to(c.dtype)  # fp32 sums: within an output ulp
        tol = 2**-7 if c.dtype == torch.bfloat16 else 2**-10
        torch.testing.assert_close(r.out.float(), y.float(), rtol=tol, atol=tol)
        return
    if c.fused:
        aq = ref.quantize_act(t["x"][:, :c.k], c.a_bits, c.sym, c.clip)
        sa_codes = aq.codes.long().sum(1)
        e_ref = ref.int_dot(aq.codes, w) - t["w_zero"].long()[None, :] * sa_codes[:, None]
        e = r.raw.long() + ksa * sw[None, :] - ksa * kcw * c.k
        assert torch.equal(e, e_ref)
        y = _kernel_float(e_ref, aq.scale, aq.zero, t, c.k, c.out_dtype)
        assert torch.equal(r.out.view(torch.int16), y.view(torch.int16))
        return
    d_ref = ref.int_dot(t["codes"], w)
    sa = t["a_sum"].long()[:, None]
    d = r.raw.long() + kcw * sa + ksa * sw[None, :] - ksa * kcw * c.k
    assert torch.equal(d, d_ref)
    if c.out_i32:
        assert torch.equal(r.out, d_ref.to(torch.int32))
    else:
        e = d_ref - t["w_zero"].long()[None, :] * sa
        y = _kernel_float(e, t["a_scale"], t["a_zero"], t, c.k, c.out_dtype)
        assert torch.equal(r.out.view(torch.int16), y.view(torch.int16))


MULTI_TRIP = [
    GemvCase("s8", 2, 8, 1, 40, 9000, out_i32=True),
    GemvCase("s8", 4, 8, 8, 33, 11008, out_i32=True),
    GemvCase("s8", 8, 8, 1, 16, 28672, out_i32=True),  # W8A8 at the int32 limit's K
    GemvCase("s8", 3, 8, 8, 33, 11008, fused=True, dtype=torch.bfloat16, sms=1),
    GemvCase("s8", 4, 8, 1, 40, 9000, fused=True, sym=True),
    GemvCase("btc", 2, 8, 1, 40, 9000, out_i32=True),
    GemvCase("btc", 4, 4, 8, 33, 11008, fused=True, sym=True),
    GemvCase("btc", 4, 4, 3, 33, 5000, fused=True, clip=0.85),  # clipped ranges
    GemvCase("s8", 4, 8, 2, 40, 3000, fused=True, sym=True, clip=0.9, dtype=torch.bfloat16),
    GemvCase("a16", 2, 16, 1, 40, 9000, group=128),
    GemvCase("a16", 4, 16, 8, 33, 11008, group=128, dtype=torch.bfloat16),
    GemvCase("a16", 3, 16, 5, 37, 1000, x_pad=24, sms=1),  # x wider than K
]


@pytest.mark.parametrize("case", MULTI_TRIP, ids=lambda c: f"{c.path}-W{c.w_bits}A{c.a_bits}-"
                         f"{c.m}x{c.n}x{c.k}{'-fused' if c.fused else ''}")
def test_gemv_multi_trip(exe, case: GemvCase) -> None:
    _check(exe, case)


def test_gemv_plans_split_and_loop(exe) -> None:
    """The shapes above really run several trips per warp, with and without split-K."""
    t = _inputs(MULTI_TRIP[0])
    r = run_gemv(exe, MULTI_TRIP[0], t)
    assert r.splits > 1 and r.trips >= 2
    c = GemvCase("s8", 2, 8, 1, 40, 9000, out_i32=True, sms=1)
    r = run_gemv(exe, c, _inputs(c))
    assert r.splits == 2 and r.trips % 2 == 1  # odd trip count: the loop's tail
    _check(exe, c)


@pytest.mark.parametrize("q", range(1, 9))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gemv_a16_every_width(exe, q: int, dtype: torch.dtype) -> None:
    _check(exe, GemvCase("a16", q, 16, 3, 20, 700, group=128 if q % 2 else 0, dtype=dtype,
                         seed=q))


@pytest.mark.parametrize(("q", "group", "hoist"), [(2, 64, False), (2, 32, False),
                                                   (5, 64, True), (1, 96, False)])
def test_gemv_a16_small_groups(exe, q: int, group: int, hoist: bool) -> None:
    _check(exe, GemvCase("a16", q, 16, 2, 24, 600, group=group, hoist=hoist))


@pytest.mark.parametrize("q", range(1, 9))
@pytest.mark.parametrize("fused", [False, True])
def test_gemv_s8_every_width(exe, q: int, fused: bool) -> None:
    _check(exe, GemvCase("s8", q, 8, 5, 37, 1000, fused=fused, out_i32=not fused,
                         dtype=torch.float32 if q == 3 and fused else torch.float16, seed=q))


@pytest.mark.parametrize(("q", "p"), [(1, 1), (2, 2), (2, 8), (3, 5), (4, 4), (5, 2), (6, 7),
                                      (8, 8)])
@pytest.mark.parametrize("fused", [False, True])
def test_gemv_btc_pairs(exe, q: int, p: int, fused: bool) -> None:
    _check(exe, GemvCase("btc", q, p, 7, 130, 300, fused=fused, out_i32=not fused,
                         sym=fused and p >= 2, seed=p, clip=0.8 if fused and q % 2 else 1.0))


PIPE = [  # the pipelined GEMM (M >= 256): partial M and N tiles, several stages of the ring
    GemvCase("s8", 4, 8, 300, 130, 1000, out_i32=True, pipe=True),
    GemvCase("s8", 8, 8, 256, 64, 1100, pipe=True),
    GemvCase("s8", 2, 8, 260, 40, 600, out_i32=True, pipe=True),
    GemvCase("s8", 1, 8, 256, 16, 300, pipe=True, dtype=torch.bfloat16),
    GemvCase("a16", 3, 16, 256, 130, 1000, group=128, pipe=True),
    GemvCase("a16", 8, 16, 300, 72, 700, group=64, dtype=torch.bfloat16, pipe=True, x_pad=8),
    GemvCase("a16", 2, 16, 256, 40, 600, pipe=True),
    GemvCase("a16", 5, 16, 256, 24, 520, group=32, pipe=True),
]


@pytest.mark.parametrize("case", PIPE, ids=lambda c: f"{c.path}-W{c.w_bits}-{c.m}x{c.n}x{c.k}")
def test_pipelined_gemm(exe, case: GemvCase) -> None:
    _check(exe, case)
