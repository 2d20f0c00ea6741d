"""CPU reference of everything the CUDA kernels compute (device-agnostic torch code).

Layouts shared with csrc/:
* bit planes: ``int32 [bits, rows, kw]``; bit ``b`` of word ``w`` in a row is bit ``i`` of the
  code at column ``32*w + b``; ``kw`` is a multiple of 8 (256-bit blocks); pad bits are 0.
* activation codes are unsigned with a per-token zero point (symmetric codes are shifted by
  2^(bits-1)), weights unsigned with per-channel / per-group zero points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

WORD_BITS = 32
BLOCK_BITS = 256  # rows are padded to 256-bit blocks: 8 words


def storage_bits(levels: int) -> int:
    """Bit planes needed for codes 0..levels-1 (e.g. 5 levels of W2* -> 3 planes)."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in [2, 256], got {levels}")
    return max(1, math.ceil(math.log2(levels)))


def padded_words(k: int) -> int:
    """32-bit words per packed row of ``k`` columns (padded to 256-bit blocks)."""
    return -(-k // BLOCK_BITS) * (BLOCK_BITS // WORD_BITS)


@dataclass(frozen=True)
class ActQuant:
    """Per-token quantized activations: ``x ~ (codes - zero) * scale`` row-wise."""

    codes: torch.Tensor  # int32 [M, K], unsigned codes
    scale: torch.Tensor  # float32 [M]
    zero: torch.Tensor  # int32 [M]


def check_clip(clip: float) -> None:
    """Activation clip ratios live in (0, 1] (1: the full per-token min/max range)."""
    if not 0.0 < clip <= 1.0:
        raise ValueError(f"activation clip ratio must be in (0, 1], got {clip}")


def quantize_act(x: torch.Tensor, bits: int, sym: bool, clip: float = 1.0) -> ActQuant:
    """Dynamic per-token (per-row) quantization, bit-exact with the CUDA quantizer.

    The row's range is ``[min·clip, max·clip]`` (fp32 products with ``float32(clip)``, as
    ``FakeQuantLinear.act_range``); sym uses ``max(|min·clip|, |max·clip|)``. All math in float32
    after casting ``x``; division (not reciprocal multiplication) and ``torch.round`` (half to
    even), as in csrc/include/abq/quant.cuh.
    """
    if not 1 <= bits <= 8 or (sym and bits < 2):
        raise ValueError(f"unsupported activation bits={bits} sym={sym}")
    check_clip(clip)
    xf = x.float().reshape(-1, x.shape[-1])
    lo, hi = xf.amin(dim=-1) * clip, xf.amax(dim=-1) * clip
    if sym:
        half = 2 ** (bits - 1)
        scale = torch.maximum(lo.abs(), hi.abs()).clamp(min=1e-8) / (half - 1)
        q = torch.clamp(torch.round(xf / scale[:, None]), -half, half - 1) + half
        zero = torch.full_like(scale, half)
    else:
        scale = (hi - lo).clamp(min=1e-8) / (2**bits - 1)
        zero = torch.round(-lo / scale)
        q = torch.clamp(torch.round(xf / scale[:, None]) + zero[:, None], 0, 2**bits - 1)
    return ActQuant(q.to(torch.int32), scale, zero.to(torch.int32))


def pack_planes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes ``[R, K]`` (values < 2**bits) -> bit planes ``int32 [bits, R, kw]``."""
    rows, k = codes.shape
    kw = padded_words(k)
    c = torch.zeros(rows, kw * WORD_BITS, dtype=torch.int64, device=codes.device)
    c[:, :k] = codes.to(torch.int64)
    if k and (int(c.min()) < 0 or int(c.max()) >= 2**bits):
        raise ValueError(f"codes out of range for {bits} bits")
    weights = torch.ones(WORD_BITS, dtype=torch.int64, device=codes.device) << torch.arange(
        WORD_BITS, device=codes.device
    )
    planes = []
    for i in range(bits):
        bit = ((c >> i) & 1).view(rows, kw, WORD_BITS)
        word = (bit * weights).sum(-1)  # 0 .. 2^32-1
        planes.append(torch.where(word >= 2**31, word - 2**32, word).to(torch.int32))
    return torch.stack(planes)


def unpack_planes(planes: torch.Tensor, k: int) -> torch.Tensor:
    """Bit planes ``[bits, R, kw]`` -> codes ``int64 [R, k]``."""
    bits, rows, kw = planes.shape
    words = planes.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(WORD_BITS, device=planes.device)
    bit = (words[..., None] >> shifts) & 1  # [bits, R, kw, 32]
    bit = bit.reshape(bits, rows, kw * WORD_BITS)[:, :, :k]
    scale = torch.ones(bits, dtype=torch.int64, device=planes.device) << torch.arange(
        bits, device=planes.device
    )
    return (bit * scale[:, None, None]).sum(0)


def popcount32(x: torch.Tensor) -> torch.Tensor:
    """Population count of the low 32 bits of an integer tensor (SWAR, int64 math)."""
    v = x.to(torch.int64) & 0xFFFFFFFF
    v = v - ((v >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F
    return ((v * 0x01010101) & 0xFFFFFFFF) >> 24


def btc_dot(a_planes: torch.Tensor, w_planes: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The BTC arithmetic: ``sum_ij 2^(i+j) popc(A_i AND W_j)`` -> ``int64 [M, N]``.

    Literal word-level reference of what the binary tensor cores compute (slow; tests only).
    """
    p, m, kw = a_planes.shape
    q, n, kw2 = w_planes.shape
    if kw != kw2:
        raise ValueError(f"packed widths differ: {kw} vs {kw2}")
    dev = a_planes.device
    shift = torch.arange(p, device=dev)[:, None] + torch.arange(q, device=dev)
    out = torch.zeros(m, n, dtype=torch.int64, device=dev)
    for s in range(0, m, chunk):
        a = a_planes[:, s : s + chunk]  # [p, mc, kw]
        anded = a[:, None, :, None, :] & w_planes[None, :, None, :, :]  # [p, q, mc, n, kw]
        counts = popcount32(anded).sum(-1)  # [p, q, mc, n]
        out[s : s + chunk] = (counts << shift[:, :, None, None]).sum((0, 1))
    return out


def int_dot(a_codes: torch.Tensor, w_codes: torch.Tensor) -> torch.Tensor:
    """Exact ``sum_k A[m,k] W[n,k]`` as ``int64 [M, N]`` (integer matmul)."""
    return a_codes.to(torch.int64) @ w_codes.to(torch.int64).T


def s8_dot(a_codes: torch.Tensor, w_codes: torch.Tensor, w_bits: int) -> torch.Tensor:
    """The s8-path arithmetic: signed products plus the exact zero-shift correction.

    ``A_s = A_u - 128``; ``W_s = W_u - cw`` with ``cw = 128`` for 8-bit weights else 0;
    ``sum A_u W_u = sum A_s W_s + cw*sum A_u + 128*sum W_u - 128*cw*K``.
    """
    k = a_codes.shape[1]
    cw = 128 if w_bits == 8 else 0
    a_s = a_codes.to(torch.int64) - 128
    w_s = w_codes.to(torch.int64) - cw
    if a_s.numel() and (a_s.abs().max() > 128 or w_s.abs().max() > 128):
        raise ValueError("codes exceed the int8 range")
    acc = a_s @ w_s.T
    a_sum = a_codes.to(torch.int64).sum(1)
    w_sum = w_codes.to(torch.int64).sum(1)
    return acc + cw * a_sum[:, None] + 128 * w_sum[None, :] - 128 * cw * k


def int_epilogue(
    dot: torch.Tensor,
    a_scale: torch.Tensor,
    a_zero: torch.Tensor,
    a_sum: torch.Tensor,
    w_scale: torch.Tensor,
    w_zero: torch.Tensor,
    w_sum: torch.Tensor,
    k: int,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """Per-token x per-channel dequantization of the integer core (float64 result).

    ``y = sa*sw*(D - za*SW - zw*SA + K*za*zw) + bias``; the bracket is exact in int64.
    """
    za = a_zero.to(torch.int64)[:, None]
    zw = w_zero.to(torch.int64)[None, :]
    e = dot - za * w_sum.to(torch.int64)[None, :] - zw * a_sum.to(torch.int64)[:, None]
    e = e + k * za * zw
    y = a_scale.double()[:, None] * w_scale.double()[None, :] * e.double()
    return y if bias is None else y + bias.double()[None, :]


def dequant_weight(
    qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int
) -> torch.Tensor:
    """``W[o,i] = (q[o,i] - zero[o,i//g]) * scale[o,i//g]`` in float32."""
    n, k = qweight.shape
    idx = torch.arange(k, device=qweight.device) // group_size
    return (qweight.float() - zero.float()[:, idx]) * scale.float()[:, idx]


def dequant_weight_as(
    qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Dequantized weight rounded once to ``dtype`` (what the A16 kernel feeds the MMA)."""
    return dequant_weight(qweight, scale, zero, group_size).to(dtype)
