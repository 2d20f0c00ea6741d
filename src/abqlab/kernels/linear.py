"""Quantized Linear built from a calibrated export; runs the abqlab ops.

Export schema (``abqlab.quant`` produces it): ``qweight`` uint8 [out, in] codes in
[0, w_levels-1]; ``scale``/``zero`` float32 [out, n_groups] (zero integer-valued);
``group_size``; ``w_bits``; ``w_levels``; ``a_bits`` (16 = weight-only); ``a_sym``; ``bias``;
optional (older exports lack them): ``a_clip`` (float in (0, 1], default 1: the per-token range
is [min·a_clip, max·a_clip]) and ``input_rotation`` (None, default, or the ``OnlineRotation``
fields {"signs", "factor", "inner", "inner_hadamard"}: x ↦ x·diag(signs)·(F ⊗ K), applied to the
input before the activation quantizer, in the input's dtype, by the module's own torch code).

Weight-only layers keep (scale, zero) per activation dtype: fp32 (CPU reference) and fp16 /
bf16 (what the CUDA kernels read; the scale is rounded to that dtype, the product
``(q - z) * s`` is then rounded once, as in the reference). The kernels' exact integer
subtraction needs |zero| <= 1024 (fp16) / 128 (bf16); other layers raise on CUDA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from abqlab.kernels import _ext, ops
from abqlab.kernels import reference as ref
from abqlab.rotation.online import OnlineRotation

BACKENDS = ("auto", "btc", "s8")


def _check_export(e: Mapping[str, Any]) -> None:
    q = e["qweight"]
    if q.dtype != torch.uint8 or q.dim() != 2:
        raise ValueError(f"qweight must be uint8 [out, in], got {q.dtype} {tuple(q.shape)}")
    n, k = q.shape
    g = int(e["group_size"])
    groups = -(-k // g)
    for name in ("scale", "zero"):
        if tuple(e[name].shape) != (n, groups):
            raise ValueError(f"{name} must be [{n}, {groups}], got {tuple(e[name].shape)}")
    if not torch.equal(e["zero"].float(), torch.round(e["zero"].float())):
        raise ValueError("zero points must be integer-valued")
    if q.numel() and int(q.max()) >= int(e["w_levels"]):
        raise ValueError(f"codes exceed w_levels={e['w_levels']}")


ZERO_LIMIT = {torch.float16: 1024, torch.bfloat16: 128}  # exact (2^m + z) - ... in the kernels


def pack_weight(export: Mapping[str, Any]) -> dict[str, Tensor]:
    """Kernel-ready tensors of one exported linear: planes, (scale, zero) pairs, code sums."""
    _check_export(export)
    q = export["qweight"]
    bits = ref.storage_bits(int(export["w_levels"]))
    scale, zero = export["scale"].float(), export["zero"].float()
    sz = torch.stack([scale, zero], -1).contiguous()  # [out, groups, 2]
    return {
        "planes": ref.pack_planes(q, bits),
        "sz32": sz,
        "sz16": sz.to(torch.float16),
        "szbf": sz.to(torch.bfloat16),
        "scale_c": scale[:, 0].contiguous(),  # per-channel paths
        "zero_i": zero[:, 0].to(torch.int32).contiguous(),
        "w_sum": q.to(torch.int64).sum(1).to(torch.int32),
    }


def a16_exact(export: Mapping[str, Any], dtype: torch.dtype) -> bool:
    """True when the CUDA weight-only kernels represent this layer exactly in ``dtype``."""
    zero, scale = export["zero"].float(), export["scale"].float()
    st = scale.to(dtype)
    return bool(zero.abs().max() <= ZERO_LIMIT[dtype] and torch.isfinite(st).all()
                and not ((st == 0) & (scale != 0)).any())


def input_rotation(export: Mapping[str, Any]) -> OnlineRotation | None:
    """The export's online input rotation, rebuilt (None when it has none)."""
    fields = export.get("input_rotation")
    return None if fields is None else OnlineRotation.from_fields(fields)


def a_clip(export: Mapping[str, Any]) -> float:
    """The export's activation clip ratio (1.0 for exports that predate it)."""
    clip = float(export.get("a_clip", 1.0))
    ref.check_clip(clip)
    return clip


def fake_quant_linear(x: Tensor, export: Mapping[str, Any]) -> Tensor:
    """Semantic reference: rotate x (when the export has an input rotation), quantize-dequantize
    it per token (range × a_clip), dequantize W, float64 matmul."""
    w = ref.dequant_weight(export["qweight"], export["scale"], export["zero"],
                           int(export["group_size"])).double()
    rotation = input_rotation(export)
    if rotation is not None:
        x = rotation.to(x.device)(x)
    x2 = x.reshape(-1, x.shape[-1])
    if int(export["a_bits"]) < 16:
        aq = ref.quantize_act(x2, int(export["a_bits"]), bool(export["a_sym"]), a_clip(export))
        x2 = (aq.codes - aq.zero[:, None]).double() * aq.scale.double()[:, None]
    y = x2.double() @ w.T
    if export.get("bias") is not None:
        y = y + export["bias"].double()
    return y.reshape(*x.shape[:-1], w.shape[0])


class QuantLinear(nn.Module):
    """Linear layer over bit-plane packed weights.

    CUDA tensors + compiled library: CUDA kernels (BTC for WxAy, s8 for WxA8 by default,
    weight-only for A16). Otherwise the reference implementation of the same ops.
    """

    def __init__(self, export: Mapping[str, Any], backend: str = "auto") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.out_features, self.in_features = export["qweight"].shape
        self.w_bits = int(export["w_bits"])
        self.w_levels = int(export["w_levels"])
        self.a_bits = int(export["a_bits"])
        self.a_sym = bool(export["a_sym"])
        self.a_clip = a_clip(export)
        self.input_rotation = input_rotation(export)
        self.group_size = int(export["group_size"])
        self.backend = backend
        if self.a_bits < 16 and not 1 <= self.a_bits <= 8:
            raise ValueError(f"a_bits must be 1..8 or 16, got {self.a_bits}")
        if backend == "s8" and self.a_bits != 8:
            raise ValueError("backend 's8' needs a_bits == 8")
        for name, t in pack_weight(export).items():
            self.register_buffer(name, t)
        self.a16_exact = {dt: a16_exact(export, dt) for dt in ZERO_LIMIT}
        bias = export.get("bias")
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_export(cls, export: Mapping[str, Any], backend: str = "auto") -> QuantLinear:
        """Build from the calibrator's export dict."""
        return cls(export, backend)

    @property
    def storage_bits(self) -> int:
        return self.planes.shape[0]

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, W{self.w_bits}"
                f"({self.w_levels} levels, {self.storage_bits} planes) A{self.a_bits}"
                f"{' sym' if self.a_sym else ''} clip={self.a_clip}, group={self.group_size}, "
                f"backend={self.backend}")

    def forward(self, x: Tensor) -> Tensor:
        if self.input_rotation is not None:  # before the reshape: as the fake layer's pre-hook
            x = self.input_rotation(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.a_bits >= 16:
            sz = {torch.float16: self.sz16, torch.bfloat16: self.szbf}.get(x2.dtype, self.sz32)
            if x2.is_cuda and _ext.available() and not self.a16_exact.get(x2.dtype, True):
                raise NotImplementedError(
                    f"zero points / scales of this layer are not exact in {x2.dtype} "
                    f"(|zero| <= {ZERO_LIMIT.get(x2.dtype)} needed by the CUDA kernels)")
            y = ops.a16_gemm(x2, self.planes, sz, self.group_size, self.in_features, self.bias)
        elif self.sz32.shape[1] > 1:
            y = self._grouped_reference(x2)
        else:
            use_s8 = self.backend == "s8" or (self.backend == "auto" and self.a_bits == 8)
            y = ops.fused_linear(x2, self.planes, self.scale_c, self.zero_i, self.w_sum,
                                 self.bias, self.in_features, self.a_bits, self.a_sym,
                                 self.a_clip, use_s8)
            y = y.to(x.dtype)
        return y.reshape(*lead, self.out_features)

    def _grouped_reference(self, x2: Tensor) -> Tensor:
        if x2.is_cuda and _ext.available():
            raise NotImplementedError(
                "CUDA kernels with activation quantization support per-channel weights only "
                f"(group_size == in_features); got group_size={self.group_size}"
            )
        aq = ref.quantize_act(x2, self.a_bits, self.a_sym, self.a_clip)
        xq = (aq.codes - aq.zero[:, None]).float() * aq.scale[:, None]
        codes = ref.unpack_planes(self.planes, self.in_features)
        w = ref.dequant_weight(codes, self.sz32[..., 0], self.sz32[..., 1], self.group_size)
        y = xq @ w.T
        if self.bias is not None:
            y = y + self.bias
        return y.to(x2.dtype)
