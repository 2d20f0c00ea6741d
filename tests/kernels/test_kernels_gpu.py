"""GPU checks of the compiled kernels against the CPU reference (exact for the integer cores).

Needs a CUDA GPU and the extension (``python csrc/build.py ext``); run with ``-m gpu``.
``ABQLAB_GPU_QUICK=1`` trims the grid (used under compute-sanitizer by csrc/gpu_all.sh).
Outputs are preallocated and poisoned before every launch so unwritten elements show.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from kernel_exports import cuda_extension_or_skip
from kernel_exports import random_export as _export

from abqlab.kernels import ops
from abqlab.kernels import reference as ref
from abqlab.kernels.linear import QuantLinear, fake_quant_linear

pytestmark = pytest.mark.gpu

EXT = cuda_extension_or_skip()
DEV = torch.device("cuda")
QUICK = os.environ.get("ABQLAB_GPU_QUICK") == "1"
# (M, N, K): GEMV (M <= 8: several trips per warp, split-K) and GEMM paths, odd N/K, partial
# tiles, several k-blocks.
SHAPES = [(1, 37, 300), (5, 16, 512), (8, 100, 1000), (1, 40, 9000), (8, 33, 11008),
          (9, 45, 777), (33, 130, 1536), (130, 64, 2100), (300, 72, 1000)]
if QUICK:
    SHAPES = [(1, 37, 300), (1, 40, 9000), (9, 45, 777)]
PAIRS = list(itertools.product(range(1, 9), range(1, 9)))
if QUICK:
    PAIRS = [(1, 1), (2, 8), (3, 4), (4, 4), (8, 8)]
POISON_I32 = -1  # sum_k A_u W_u >= 0, so -1 is never a result


def _stream() -> int:
    return torch.cuda.current_stream().cuda_stream


def _ws(m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh split-K workspace (zeroed counters) for direct extension calls."""
    return (torch.empty(EXT.workspace_bytes(m, n), dtype=torch.uint8, device=DEV),
            torch.zeros(-(-n // 128), dtype=torch.int32, device=DEV))


def _codes(rows: int, k: int, bits: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2**bits, (rows, k), generator=gen, dtype=torch.int32)


def _int_args(m: int, n: int, k: int, a_codes: torch.Tensor, w_codes: torch.Tensor,
              gen: torch.Generator, bits: int = 16) -> dict[str, torch.Tensor]:
    """Random epilogue parameters; scales keep outputs O(10) (no fp16 overflow)."""
    return {
        "a_scale": (torch.rand(m, generator=gen) + 0.01),
        "a_zero": torch.randint(-5, 20, (m,), generator=gen, dtype=torch.int32),
        "a_sum": a_codes.sum(1, dtype=torch.int32),
        "w_scale": (torch.rand(n, generator=gen) + 0.01) * 100 / (k * 2**bits),
        "w_zero": torch.randint(0, 4, (n,), generator=gen, dtype=torch.int32),
        "w_sum": w_codes.sum(1, dtype=torch.int32),
        "bias": torch.randn(n, generator=gen),
    }


def _run_int(kind: str, a_packed: torch.Tensor, w_planes: torch.Tensor,
             args: dict[str, torch.Tensor], k: int, out_dtype: torch.dtype,
             with_bias: bool = True) -> torch.Tensor:
    m, n = args["a_scale"].shape[0], w_planes.shape[1]
    g = {key: v.to(DEV) for key, v in args.items()}
    poison = POISON_I32 if out_dtype == torch.int32 else float("nan")
    out = torch.full((m, n), poison, dtype=out_dtype, device=DEV)
    fn = EXT.btc_gemm if kind == "btc" else EXT.s8_gemm
    ws, counters = _ws(m, n)
    fn(a_packed.to(DEV), g["a_scale"], g["a_zero"], g["a_sum"], w_planes.to(DEV),
       g["w_scale"], g["w_zero"], g["w_sum"], g["bias"] if with_bias else None, out, k,
       ws, counters, _stream())
    torch.cuda.synchronize()
    assert int(counters.abs().sum()) == 0  # the last block of each tile resets its counter
    return out.cpu()


@pytest.mark.parametrize(("w_bits", "a_bits"), PAIRS)
def test_btc_exact(w_bits: int, a_bits: int) -> None:
    gen = torch.Generator().manual_seed(100 * w_bits + a_bits)
    for m, n, k in SHAPES:
        if (2**a_bits - 1) * (2**w_bits - 1) * k > ops.INT32_MAX:
            continue
        a, w = _codes(m, k, a_bits, gen), _codes(n, k, w_bits, gen)
        args = _int_args(m, n, k, a, w, gen, a_bits + w_bits)
        ap, wp = ref.pack_planes(a, a_bits), ref.pack_planes(w, w_bits)
        got = _run_int("btc", ap, wp, args, k, torch.int32)
        assert torch.equal(got, ref.int_dot(a, w).to(torch.int32)), (m, n, k)
        for dt in (torch.float16, torch.bfloat16):
            y = _run_int("btc", ap, wp, args, k, dt)
            expect = ref.int_epilogue(ref.int_dot(a, w), **{
                key: args[key] for key in ("a_scale", "a_zero", "a_sum", "w_scale", "w_zero",
                                           "w_sum", "bias")}, k=k)
            assert not y.isnan().any()
            torch.testing.assert_close(y.double(), expect.to(dt).double(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("w_bits", range(1, 9))
def test_s8_exact(w_bits: int) -> None:
    gen = torch.Generator().manual_seed(w_bits)
    for m, n, k in SHAPES:
        a, w = _codes(m, k, 8, gen), _codes(n, k, w_bits, gen)
        args = _int_args(m, n, k, a, w, gen)
        a_i8 = torch.zeros(m, 32 * ref.padded_words(k), dtype=torch.int8)
        a_i8[:, :k] = (a - 128).to(torch.int8)
        got = _run_int("s8", a_i8, ref.pack_planes(w, w_bits), args, k, torch.int32)
        assert torch.equal(got, ref.int_dot(a, w).to(torch.int32)), (m, n, k)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("int8", [False, True])
def test_act_quant_pack_exact(bits: int, sym: bool, dtype: torch.dtype, int8: bool) -> None:
    if (sym and bits < 2) or (int8 and bits != 8):
        pytest.skip("combination not used")
    gen = torch.Generator().manual_seed(bits)
    for m, _, k in SHAPES:
        x = (torch.randn(m, k, generator=gen) * 4).to(dtype)
        x[0, : k // 2] = 0.5  # ties and repeated values
        packed, scale, zero, rowsum = (t.cpu() for t in ops._act_ref(x, bits, sym, 1.0, int8))
        xd = x.to(DEV)
        outs = [torch.full_like(t, -7, device=DEV) if t.dtype != torch.float32
                else torch.full_like(t, float("nan"), device=DEV)
                for t in (packed, scale, zero, rowsum)]
        EXT.act_quant_pack(xd, *outs, bits, sym, 1.0, int8, _stream())
        torch.cuda.synchronize()
        got = [t.cpu() for t in outs]
        assert torch.equal(got[1], scale), "scale"
        assert torch.equal(got[2], zero), "zero"
        assert torch.equal(got[3], rowsum), "rowsum"
        assert torch.equal(got[0], packed), "packed codes"


@pytest.mark.parametrize("w_bits", range(1, 9))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group", [128, 64, 0])  # 0 = per channel; 64: per-word groups at W1/2
def test_a16_close(w_bits: int, dtype: torch.dtype, group: int) -> None:
    gen = torch.Generator().manual_seed(w_bits)
    for m, n, k in SHAPES:
        g = group or k
        groups = -(-k // g)
        w = _codes(n, k, w_bits, gen)
        scale = (torch.rand(n, groups, generator=gen) + 0.5) / 2**w_bits
        zero = torch.randint(0, 2**w_bits, (n, groups), generator=gen).float()
        sz = torch.stack([scale, zero], -1).to(dtype)
        x = torch.randn(m, k + 16, generator=gen).to(dtype)
        x[:, k:] = 1e4  # columns past K are ignored (the A16 width rule)
        bias = torch.randn(n, generator=gen)
        planes = ref.pack_planes(w, w_bits)
        expect = ops._a16_ref(x, planes, sz, g, k, bias)
        y = ops.a16_gemm(x.to(DEV), planes.to(DEV), sz.to(DEV), g, k, bias.to(DEV)).cpu()
        assert y.dtype == dtype and not y.isnan().any()
        tol = 2e-2 if dtype == torch.bfloat16 else 5e-3
        torch.testing.assert_close(y.float(), expect.float(), rtol=tol, atol=tol * 4)


def _assert_close_or_overflow(out: torch.Tensor, expect: torch.Tensor) -> None:
    """``out`` (fp16/bf16) close to the float32 ``expect`` where that fits the dtype; where
    ``expect`` is clearly beyond its range (random W8A8 sums reach fp16's 65504), ``out`` must be
    an infinity of the same sign."""
    limit = torch.finfo(out.dtype).max
    fits = expect.abs() < 0.99 * limit
    beyond = expect.abs() > 1.01 * limit
    torch.testing.assert_close(out.float()[fits], expect[fits], rtol=1e-2, atol=1e-2)
    assert torch.equal(out.float()[beyond], expect[beyond].sign() * float("inf"))


@pytest.mark.parametrize(("w_bits", "a_bits", "int8"), [(4, 8, True), (2, 8, True),
                                                         (8, 8, True), (4, 4, False),
                                                         (2, 8, False), (3, 6, False)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_linear_equals_op_chain(w_bits: int, a_bits: int, int8: bool,
                                      dtype: torch.dtype) -> None:
    """M <= 8: one kernel (quantizing in its prologue) == act_quant_pack + GEMV kernels on the
    GPU bit for bit (same integer core, same fp32 epilogue), and close to the CPU reference."""
    gen = torch.Generator().manual_seed(w_bits + a_bits)
    for m, n, k in [s for s in SHAPES if s[0] <= 8]:
        if (2**a_bits - 1) * (2**w_bits - 1) * k > ops.INT32_MAX:
            continue
        w = _codes(n, k, w_bits, gen)
        x = (torch.randn(m, k, generator=gen) * 3).to(dtype).to(DEV)
        wargs = (ref.pack_planes(w, w_bits).to(DEV), torch.rand(n, generator=gen).to(DEV),
                 torch.randint(0, 2**w_bits, (n,), generator=gen, dtype=torch.int32).to(DEV),
                 w.sum(1, dtype=torch.int32).to(DEV), torch.randn(n, generator=gen).to(DEV))
        fused = ops.fused_linear(x, *wargs, k, a_bits, False, 1.0, int8)
        gemm = ops.s8_gemm if int8 else ops.btc_gemm
        chain = gemm(*ops.act_quant_pack(x, a_bits, False, 1.0, int8), *wargs, k, dtype)
        assert torch.equal(fused, chain), (m, n, k)
        cpu = gemm(*ops._act_ref(x.cpu(), a_bits, False, 1.0, int8), *(t.cpu() for t in wargs), k,
                   torch.float32)
        _assert_close_or_overflow(fused.cpu(), cpu)
        again = ops.fused_linear(x, *wargs, k, a_bits, False, 1.0, int8)  # counters were reset
        assert torch.equal(again, fused)


@pytest.mark.parametrize("path", ["s8", "a16"])
def test_multi_wave_pipelined_gemm(path: str) -> None:
    """M >= 256 runs the cp.async / ldmatrix GEMM: 10 x 18 CTAs of 128 x 128 (more than one
    wave on any current GPU), partial last tiles, exact integer core (reference in float64 on
    the GPU: integer sums below 2^53 are exact)."""
    gen = torch.Generator().manual_seed(7)
    m, n, k, q = 1250, 2250, 1000, 4
    w = _codes(n, k, q, gen)
    wd = w.to(DEV).double()
    planes = ref.pack_planes(w, q).to(DEV)
    if path == "s8":
        a = _codes(m, k, 8, gen)
        args = _int_args(m, n, k, a, w, gen)
        a_i8 = torch.zeros(m, 32 * ref.padded_words(k), dtype=torch.int8)
        a_i8[:, :k] = (a - 128).to(torch.int8)
        got = _run_int("s8", a_i8, planes.cpu(), args, k, torch.int32)
        expect = (a.to(DEV).double() @ wd.T).round().long().cpu()
        assert torch.equal(got.long(), expect)
        return
    scale = (torch.rand(n, 8, generator=gen) + 0.5) / 2**q
    zero = torch.randint(0, 2**q, (n, 8), generator=gen).float()
    sz = torch.stack([scale, zero], -1).half()
    x = torch.randn(m, k, generator=gen).half()
    y = ops.a16_gemm(x.to(DEV), planes, sz.to(DEV), 128, k, None).float()
    deq = ref.dequant_weight_as(w.to(DEV), sz[..., 0].float().to(DEV),
                                sz[..., 1].float().to(DEV), 128, torch.float16)
    expect = (x.to(DEV).double() @ deq.double().T).float()
    torch.testing.assert_close(y, expect, rtol=5e-3, atol=2e-2)


def test_w8a8_at_k_28672() -> None:
    """LLaMA-2-70B down_proj: the longest K the int32 rule admits for W8A8, GEMV and GEMM."""
    gen = torch.Generator().manual_seed(0)
    k, n = 28672, 64
    w = _codes(n, k, 8, gen)
    for m in (1, 8, 40):
        a = _codes(m, k, 8, gen)
        args = _int_args(m, n, k, a, w, gen)
        a_i8 = torch.zeros(m, 32 * ref.padded_words(k), dtype=torch.int8)
        a_i8[:, :k] = (a - 128).to(torch.int8)
        got = _run_int("s8", a_i8, ref.pack_planes(w, 8), args, k, torch.int32)
        assert torch.equal(got, ref.int_dot(a, w).to(torch.int32)), m


@pytest.mark.parametrize(("w_bits", "a_bits", "levels", "backend"), [
    (4, 4, None, "auto"), (2, 8, 5, "auto"), (2, 8, 5, "btc"), (4, 8, None, "s8"),
    (3, 6, None, "auto"), (4, 16, None, "auto"), (2, 16, 5, "auto")])
def test_quant_linear_cuda_matches_cpu(w_bits: int, a_bits: int, levels: int | None,
                                       backend: str) -> None:
    gen = torch.Generator().manual_seed(0)
    n, k = 96, 640
    group = 128 if a_bits == 16 else k
    e = _export(n, k, w_bits, a_bits, group, levels, gen=gen)
    layer = QuantLinear.from_export(e, backend=backend)
    x = torch.randn(2, 5, k, generator=gen).to(torch.float16)
    y_cpu = layer(x)
    y_gpu = layer.to(DEV)(x.to(DEV)).cpu()
    assert y_gpu.shape == (2, 5, n)
    torch.testing.assert_close(y_gpu.float(), y_cpu.float(), rtol=1e-2, atol=1e-2)
    sem = fake_quant_linear(x.float(), e)
    torch.testing.assert_close(y_gpu.double(), sem, rtol=2e-2, atol=5e-2)


def test_unsupported_inputs_raise() -> None:
    gen = torch.Generator().manual_seed(1)
    e16 = _export(32, 256, 4, 16, 128, gen=gen)
    layer = QuantLinear.from_export(e16).to(DEV)
    with pytest.raises(TypeError):
        layer(torch.randn(3, 256, device=DEV))  # fp32 activations: no A16 kernel
    eg = _export(32, 256, 4, 8, 128, gen=gen)  # grouped weights with activation quant
    with pytest.raises(NotImplementedError):
        QuantLinear.from_export(eg).to(DEV)(torch.randn(3, 256, device=DEV).half())
    ea = _export(32, 256, 4, 8, 256, gen=gen)
    with pytest.raises(TypeError):
        QuantLinear.from_export(ea, backend="btc").to(DEV)(torch.randn(3, 256, device=DEV,
                                                                       dtype=torch.float64))
    planes = torch.zeros(8, 4, 2048, dtype=torch.int32, device=DEV)
    a = torch.zeros(8, 1, 2048, dtype=torch.int32, device=DEV)
    with pytest.raises(RuntimeError, match="invalid argument"):  # the C API's own int32 rule
        EXT.btc_gemm(a, torch.zeros(1, device=DEV), torch.zeros(1, dtype=torch.int32, device=DEV),
                     torch.zeros(1, dtype=torch.int32, device=DEV), planes,
                     torch.zeros(4, device=DEV), torch.zeros(4, dtype=torch.int32, device=DEV),
                     torch.zeros(4, dtype=torch.int32, device=DEV), None,
                     torch.empty(1, 4, dtype=torch.int32, device=DEV), 65536, None, None,
                     _stream())
    v1 = torch.zeros(1, device=DEV)
    i1 = torch.zeros(1, dtype=torch.int32, device=DEV)
    v4 = torch.zeros(4, device=DEV)
    i4 = torch.zeros(4, dtype=torch.int32, device=DEV)
    with pytest.raises(ValueError, match="overflow"):
        ops.btc_gemm(a, v1, i1, i1, planes, v4, i4, i4, None, 65536, torch.int32)
    with pytest.raises(RuntimeError):  # binding-level check: non-contiguous planes
        EXT.btc_gemm(a, v1, i1, i1, planes.transpose(1, 2), v4, i4, i4, None,
                     torch.empty(1, 4, dtype=torch.int32, device=DEV), 100, None, None,
                     _stream())


@pytest.mark.parametrize(("w_bits", "a_bits", "sym"), [(2, 8, False), (4, 4, True), (3, 6, False),
                                                       (8, 8, True), (1, 2, False)])
@pytest.mark.parametrize("m", [1, 7, 40])
def test_op_chain_exact(w_bits: int, a_bits: int, sym: bool, m: int) -> None:
    """act_quant_pack -> btc_gemm / s8_gemm through torch.ops on CUDA == the CPU ops, exactly."""
    gen = torch.Generator().manual_seed(m)
    k, n = 1000, 72
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    w = _codes(n, k, w_bits, gen)
    wp = ref.pack_planes(w, w_bits)
    wargs = (torch.rand(n, generator=gen), torch.randint(0, 3, (n,), generator=gen,
                                                         dtype=torch.int32),
             w.sum(1, dtype=torch.int32), None, k, torch.int32)
    for int8 in ([False, True] if a_bits == 8 else [False]):
        gemm = ops.s8_gemm if int8 else ops.btc_gemm
        cpu = gemm(*ops.act_quant_pack(x, a_bits, sym, 1.0, int8), wp, *wargs)
        act = ops.act_quant_pack(x.to(DEV), a_bits, sym, 1.0, int8)
        gpu = gemm(*act, wp.to(DEV), *(t.to(DEV) if torch.is_tensor(t) else t for t in wargs))
        assert torch.equal(gpu.cpu(), cpu), int8
