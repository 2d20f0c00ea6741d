"""``torch.library`` ops of the ``abqlab`` namespace.

Each op has a reference implementation (any device, exact integer math), a fake (meta)
implementation for tracing, and a CUDA implementation that calls the compiled kernels when the
extension is loaded (otherwise the reference runs on the CUDA tensors).

* ``abqlab::act_quant_pack(x, bits, sym, clip, int8)`` -> (packed, scale, zero, rowsum); the
  per-token range is [min·clip, max·clip] (``clip`` in (0, 1], 1 = min/max)
* ``abqlab::btc_gemm(a_planes, a_scale, a_zero, a_sum, w_planes, w_scale, w_zero, w_sum, bias,
  k, out_dtype)``: bit-plane GEMM; ``out_dtype`` int32 returns the raw ``sum_k A_u W_u``
* ``abqlab::s8_gemm(a_i8, ...same...)``: weights unpacked to int8, activations int8 (A8)
* ``abqlab::fused_linear(x, w_planes, w_scale, w_zero, w_sum, bias, k, a_bits, a_sym, a_clip,
  int8)``:
  act_quant_pack + btc/s8 GEMM in one op; on CUDA with M <= 8 one kernel does both
* ``abqlab::a16_gemm(x, w_planes, w_sz, group_size, k, bias)``: weight-only; ``w_sz`` holds the
  (scale, zero) of each group as ``[N, groups, 2]`` in the activations' dtype (fp32 on CPU)

The CUDA GEMV kernels (M <= 8) split K across blocks and reduce in-kernel through a scratch
buffer cached per device (``_workspace``): kernels that share it must run on one stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from abqlab.kernels import _ext
from abqlab.kernels import reference as ref

INT_OUT = (torch.int32, torch.float16, torch.bfloat16, torch.float32)
CUDA_OUT = (torch.int32, torch.float16, torch.bfloat16)
INT32_MAX = 2**31 - 1
Quad = tuple[Tensor, Tensor, Tensor, Tensor]


def _stream(t: Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


_WORKSPACE: dict[int, tuple[Tensor, Tensor]] = {}
_RETIRED: list[tuple[Tensor, Tensor]] = []  # outgrown buffers a captured CUDA graph may still use


def _workspace(ext, device: torch.device, m: int, n: int) -> tuple[Tensor, Tensor]:
    """Split-K scratch (bytes) and tile counters for the GEMV kernels on ``device``."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    need, tiles = int(ext.workspace_bytes(m, n)), -(-n // 128)
    ws = _WORKSPACE.get(idx)
    if ws is None or ws[0].numel() < need or ws[1].numel() < tiles:
        if ws is not None:
            _RETIRED.append(ws)
        size = max(need, 0 if ws is None else ws[0].numel(), 1 << 20)
        count = max(tiles, 0 if ws is None else ws[1].numel(), 1024)
        ws = (torch.empty(size, dtype=torch.uint8, device=device),
              torch.zeros(count, dtype=torch.int32, device=device))
        _WORKSPACE[idx] = ws
    return ws


def check_int_range(a_bits: int, w_bits: int, k: int) -> None:
    """The kernels accumulate sum_k A_u W_u in int32: refuse shapes that could overflow."""
    if (2**a_bits - 1) * (2**w_bits - 1) * k > INT32_MAX:
        raise ValueError(
            f"K={k} too large for W{w_bits}A{a_bits}: int32 accumulation could overflow"
        )


# ------------------------------------------------------------------ act_quant_pack
def _act_ref(x: Tensor, bits: int, sym: bool, clip: float, int8: bool) -> Quad:
    aq = ref.quantize_act(x, bits, sym, clip)
    m, k = aq.codes.shape
    if int8:
        packed = torch.zeros(m, 32 * ref.padded_words(k), dtype=torch.int8, device=x.device)
        packed[:, :k] = (aq.codes - 128).to(torch.int8)
    else:
        packed = ref.pack_planes(aq.codes, bits)
    return packed, aq.scale, aq.zero, aq.codes.sum(1, dtype=torch.int32)


@torch.library.custom_op("abqlab::act_quant_pack", mutates_args=())
def act_quant_pack(x: Tensor, bits: int, sym: bool, clip: float, int8: bool) -> Quad:
    """Per-token quantization of ``x [M, K]`` (range × ``clip``) + packing (bit planes or
    int8 = code - 128)."""
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D, got shape {tuple(x.shape)}")
    return _act_ref(x, bits, sym, clip, int8)


@act_quant_pack.register_fake
def _act_fake(x: Tensor, bits: int, sym: bool, clip: float, int8: bool) -> Quad:
    m, k = x.shape
    kw = ref.padded_words(k)
    if int8:
        packed = x.new_empty((m, 32 * kw), dtype=torch.int8)
    else:
        packed = x.new_empty((bits, m, kw), dtype=torch.int32)
    return (packed, x.new_empty((m,), dtype=torch.float32), x.new_empty((m,), dtype=torch.int32),
            x.new_empty((m,), dtype=torch.int32))


@act_quant_pack.register_kernel("cuda")
def _act_cuda(x: Tensor, bits: int, sym: bool, clip: float, int8: bool) -> Quad:
    ext = _ext.load()
    if ext is None:
        return _act_ref(x, bits, sym, clip, int8)
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"act_quant_pack: unsupported dtype {x.dtype}")
    if not 1 <= bits <= 8 or (sym and bits < 2):
        raise ValueError(f"act_quant_pack: unsupported bits={bits} sym={sym}")
    ref.check_clip(clip)
    x = x.contiguous()
    packed, scale, zero, rowsum = _act_fake(x, bits, sym, clip, int8)
    ext.act_quant_pack(x, packed, scale, zero, rowsum, bits, sym, clip, int8, _stream(x))
    return packed, scale, zero, rowsum


# ------------------------------------------------------------------ integer GEMMs
def _finish(dot: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor, w_scale: Tensor,
            w_zero: Tensor, w_sum: Tensor, bias: Tensor | None, k: int,
            out_dtype: torch.dtype) -> Tensor:
    if out_dtype == torch.int32:
        if dot.numel() and int(dot.abs().max()) > INT32_MAX:
            raise ValueError("integer result exceeds int32")
        return dot.to(torch.int32)
    y = ref.int_epilogue(dot, a_scale, a_zero, a_sum, w_scale, w_zero, w_sum, k, bias)
    return y.to(out_dtype)


def _check_out(out_dtype: torch.dtype, allowed: tuple[torch.dtype, ...]) -> None:
    if out_dtype not in allowed:
        raise TypeError(f"unsupported out_dtype {out_dtype}; allowed: {allowed}")


def _gemm_fake(a: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor, w_planes: Tensor,
               w_scale: Tensor, w_zero: Tensor, w_sum: Tensor, bias: Tensor | None, k: int,
               out_dtype: torch.dtype) -> Tensor:
    return a_scale.new_empty((a_scale.shape[0], w_planes.shape[1]), dtype=out_dtype)


def _launch_int(kind: str, a: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor,
                w_planes: Tensor, w_scale: Tensor, w_zero: Tensor, w_sum: Tensor,
                bias: Tensor | None, k: int, out_dtype: torch.dtype) -> Tensor:
    ext = _ext.load()
    _check_out(out_dtype, CUDA_OUT)
    a_bits = 8 if kind == "s8" else a.shape[0]
    check_int_range(a_bits, w_planes.shape[0], k)
    out = _gemm_fake(a, a_scale, a_zero, a_sum, w_planes, w_scale, w_zero, w_sum, bias, k,
                     out_dtype)
    ws, counters = _workspace(ext, out.device, out.shape[0], out.shape[1])
    fn = ext.btc_gemm if kind == "btc" else ext.s8_gemm
    fn(a.contiguous(), a_scale, a_zero, a_sum, w_planes.contiguous(), w_scale, w_zero, w_sum,
       None if bias is None else bias.float().contiguous(), out, k, ws, counters, _stream(out))
    return out


def _btc_ref(a_planes: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor,
             w_planes: Tensor, w_scale: Tensor, w_zero: Tensor, w_sum: Tensor,
             bias: Tensor | None, k: int, out_dtype: torch.dtype) -> Tensor:
    """Bit-plane GEMM ``[M, N]``: raw integer core (int32) or dequantized (fp16/bf16/fp32)."""
    _check_out(out_dtype, INT_OUT)
    dot = ref.int_dot(ref.unpack_planes(a_planes, k), ref.unpack_planes(w_planes, k))
    return _finish(dot, a_scale, a_zero, a_sum, w_scale, w_zero, w_sum, bias, k, out_dtype)


def _s8_ref(a_i8: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor, w_planes: Tensor,
            w_scale: Tensor, w_zero: Tensor, w_sum: Tensor, bias: Tensor | None, k: int,
            out_dtype: torch.dtype) -> Tensor:
    """A8 GEMM with weights unpacked to int8 (``a_i8`` holds code - 128, zero padded)."""
    _check_out(out_dtype, INT_OUT)
    a_codes = a_i8[:, :k].to(torch.int64) + 128
    dot = ref.s8_dot(a_codes, ref.unpack_planes(w_planes, k), w_planes.shape[0])
    return _finish(dot, a_scale, a_zero, a_sum, w_scale, w_zero, w_sum, bias, k, out_dtype)


btc_gemm = torch.library.custom_op("abqlab::btc_gemm", _btc_ref, mutates_args=())
btc_gemm.register_fake(_gemm_fake)
s8_gemm = torch.library.custom_op("abqlab::s8_gemm", _s8_ref, mutates_args=())
s8_gemm.register_fake(_gemm_fake)


@btc_gemm.register_kernel("cuda")
def _btc_cuda(a_planes: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor,
              w_planes: Tensor, w_scale: Tensor, w_zero: Tensor, w_sum: Tensor,
              bias: Tensor | None, k: int, out_dtype: torch.dtype) -> Tensor:
    args = (a_planes, a_scale, a_zero, a_sum, w_planes, w_scale, w_zero, w_sum, bias, k,
            out_dtype)
    return _btc_ref(*args) if _ext.load() is None else _launch_int("btc", *args)


@s8_gemm.register_kernel("cuda")
def _s8_cuda(a_i8: Tensor, a_scale: Tensor, a_zero: Tensor, a_sum: Tensor, w_planes: Tensor,
             w_scale: Tensor, w_zero: Tensor, w_sum: Tensor, bias: Tensor | None, k: int,
             out_dtype: torch.dtype) -> Tensor:
    args = (a_i8, a_scale, a_zero, a_sum, w_planes, w_scale, w_zero, w_sum, bias, k, out_dtype)
    return _s8_ref(*args) if _ext.load() is None else _launch_int("s8", *args)


# ------------------------------------------------------------------ fused (decode)
def _fused_ref(x: Tensor, w_planes: Tensor, w_scale: Tensor, w_zero: Tensor, w_sum: Tensor,
               bias: Tensor | None, k: int, a_bits: int, a_sym: bool, a_clip: float,
               int8: bool) -> Tensor:
    """``act_quant_pack(x[:, :k])`` then the btc / s8 GEMM; output in x's dtype (fp32 on CPU)."""
    packed, sa, za, asum = _act_ref(x[:, :k], a_bits, a_sym, a_clip, int8)
    gemm = _s8_ref if int8 else _btc_ref
    out_dtype = x.dtype if x.dtype in (torch.float16, torch.bfloat16) else torch.float32
    return gemm(packed, sa, za, asum, w_planes, w_scale, w_zero, w_sum, bias, k, out_dtype)


fused_linear = torch.library.custom_op("abqlab::fused_linear", _fused_ref, mutates_args=())


@fused_linear.register_fake
def _fused_fake(x: Tensor, w_planes: Tensor, w_scale: Tensor, w_zero: Tensor, w_sum: Tensor,
                bias: Tensor | None, k: int, a_bits: int, a_sym: bool, a_clip: float,
                int8: bool) -> Tensor:
    out_dtype = x.dtype if x.dtype in (torch.float16, torch.bfloat16) else torch.float32
    return x.new_empty((x.shape[0], w_planes.shape[1]), dtype=out_dtype)


@fused_linear.register_kernel("cuda")
def _fused_cuda(x: Tensor, w_planes: Tensor, w_scale: Tensor, w_zero: Tensor, w_sum: Tensor,
                bias: Tensor | None, k: int, a_bits: int, a_sym: bool, a_clip: float,
                int8: bool) -> Tensor:
    ext = _ext.load()
    args = (x, w_planes, w_scale, w_zero, w_sum, bias, k, a_bits, a_sym, a_clip, int8)
    if ext is None:
        return _fused_ref(*args)
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"fused_linear on CUDA needs float16/bfloat16 x, got {x.dtype}")
    check_int_range(8 if int8 else a_bits, w_planes.shape[0], k)
    ref.check_clip(a_clip)
    if x.shape[0] > 8:  # GEMM path: quantize + pack, then the GEMM kernel
        gemm = s8_gemm if int8 else btc_gemm
        return gemm(*act_quant_pack(x[:, :k], a_bits, a_sym, a_clip, int8), w_planes, w_scale,
                    w_zero, w_sum, bias, k, x.dtype)
    x = x[:, :k]
    if k % 8 != 0:  # 16-byte rows for the vector loads (columns past K are ignored)
        x = F.pad(x, (0, 8 - k % 8))
    x = x.contiguous()
    out = x.new_empty((x.shape[0], w_planes.shape[1]))
    ws, counters = _workspace(ext, x.device, x.shape[0], w_planes.shape[1])
    ext.fused_linear(x, w_planes.contiguous(), w_scale, w_zero, w_sum,
                     None if bias is None else bias.float().contiguous(), out, k, a_bits, a_sym,
                     a_clip, int8, ws, counters, _stream(x))
    return out


# ------------------------------------------------------------------ weight-only
def _a16_ref(x: Tensor, w_planes: Tensor, w_sz: Tensor, group_size: int, k: int,
             bias: Tensor | None) -> Tensor:
    """Weight-only GEMM: ``x [M, K] @ dequant(W)^T`` (+ bias), output in ``x.dtype``.

    Weights are ``round_T((q - z) * s)`` with s, z taken from ``w_sz`` (the kernels compute
    exactly this: the product is exact in fp32 before the single rounding to x's dtype).
    """
    w = ref.dequant_weight_as(ref.unpack_planes(w_planes, k), w_sz[..., 0].float(),
                              w_sz[..., 1].float(), group_size, x.dtype)
    y = x[:, :k].float() @ w.float().T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


a16_gemm = torch.library.custom_op("abqlab::a16_gemm", _a16_ref, mutates_args=())


@a16_gemm.register_fake
def _a16_fake(x: Tensor, w_planes: Tensor, w_sz: Tensor, group_size: int, k: int,
              bias: Tensor | None) -> Tensor:
    return x.new_empty((x.shape[0], w_planes.shape[1]))


@a16_gemm.register_kernel("cuda")
def _a16_cuda(x: Tensor, w_planes: Tensor, w_sz: Tensor, group_size: int, k: int,
              bias: Tensor | None) -> Tensor:
    ext = _ext.load()
    if ext is None:
        return _a16_ref(x, w_planes, w_sz, group_size, k, bias)
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"a16_gemm: x must be float16 or bfloat16 on CUDA, got {x.dtype}")
    if w_sz.dtype != x.dtype:
        raise TypeError(f"a16_gemm: w_sz must have x's dtype {x.dtype}, got {w_sz.dtype}")
    if w_sz.shape[1] > 1 and group_size % 32 != 0:
        raise ValueError(f"a16_gemm: group_size must be a multiple of 32, got {group_size}")
    if x.shape[1] % 8 != 0:  # the kernels read 8 activations at a time
        x = F.pad(x, (0, 8 - x.shape[1] % 8))
    x = x.contiguous()
    out = x.new_empty((x.shape[0], w_planes.shape[1]))
    ws, counters = _workspace(ext, x.device, x.shape[0], w_planes.shape[1])
    sz = w_sz.contiguous().view(torch.int32).squeeze(-1)
    b = None if bias is None else bias.float().contiguous()
    ext.a16_gemm(x, w_planes.contiguous(), sz, group_size, b, out, k, ws, counters, _stream(x))
    return out
