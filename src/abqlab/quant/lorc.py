"""LoRC, low-rank compensation (ZeroQuant-V2, Yao et al. 2023, arXiv:2303.08302; used with FP
formats in ZeroQuant-FP): after any quantization method, the weight error E = W − Q(W) of a layer
is approximated by its rank-r SVD, E ≈ U·V with U = U_r Σ_r^½ and V = Σ_r^½ V_rᵀ, and the layer
computes with Q(W) + U·V. The factors can be stored as int8 (symmetric, one scale per rank
component). W is the weight the method started from: the transformed float weight, or for GPTQ
(which overwrites the weight with its rounded one) the pre-rounding weight it leaves behind as
``lorc_reference``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from abqlab.config import LorcConfig
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.quantizer import dequantize_codes, fake_quant, quantize_codes
from abqlab.quant.spec import FP_BITS, QuantSpec

REFERENCE = "lorc_reference"  # attribute a rounding method leaves on a linear: its float weight


def rank_for(cfg: LorcConfig, name: str) -> int:
    """Rank of the linear ``name``: its longest matching ``ranks`` suffix, else ``rank``."""
    matches = [s for s in cfg.ranks if name == s or name.endswith("." + s)]
    return cfg.ranks[max(matches, key=len)] if matches else cfg.rank


def factor_spec(bits: int) -> QuantSpec:
    """Symmetric int per rank component (rows of Vᵀ-like [rank, features] matrices)."""
    return QuantSpec(bits, sym=True, group=-1)


@torch.no_grad()
def low_rank_factors(
    error: torch.Tensor, rank: int, bits: int = FP_BITS
) -> tuple[torch.Tensor, torch.Tensor]:
    """U [out, r] and V [r, in] with U·V the best rank-r approximation of ``error``."""
    u, s, vh = torch.linalg.svd(error.double(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    left, right = (u[:, :r] * root).float(), (root[:, None] * vh[:r]).float()
    if bits < FP_BITS:
        left = fake_quant(left.T.contiguous(), factor_spec(bits)).T.contiguous()
        right = fake_quant(right, factor_spec(bits))
    return left, right


@torch.no_grad()
def compensate(linear: FakeQuantLinear, rank: int, bits: int) -> dict[str, float]:
    """Set the layer's LoRC factors from its current quantization; relative errors before/after."""
    linear.lorc_u = linear.lorc_v = None
    weight, _ = linear.transformed()
    reference = getattr(linear, REFERENCE, None)
    target = (weight if reference is None else reference).detach().float()
    quantized = linear.quantized_weight(weight).detach().float()
    error = target - quantized
    u, v = low_rank_factors(error, rank, bits)
    linear.lorc_u, linear.lorc_v = u.to(weight.device), v.to(weight.device)
    linear.lorc_bits = bits
    norm = target.norm().clamp(min=1e-12)
    return {
        "rank": float(u.shape[1]),
        "rel_error": float(error.norm() / norm),
        "rel_error_lorc": float((error - u @ v).norm() / norm),
        "params": float(u.numel() + v.numel()),
        "weights": float(target.numel()),
    }


def apply_lorc(linears: Iterable[FakeQuantLinear], cfg: LorcConfig) -> dict[str, Any]:
    """LoRC on every quantized linear whose rank is > 0, then re-freeze; returns a summary.

    Always drops the ``lorc_reference`` a method left behind (so it never outlives the block).
    """
    layers: dict[str, dict[str, float]] = {}
    for linear in linears:
        rank = rank_for(cfg, linear.name)
        if linear.w_spec is not None and rank > 0:
            layers[linear.name] = compensate(linear, rank, cfg.factor_bits)
            if linear.frozen_weight is not None:
                linear.freeze()
        if hasattr(linear, REFERENCE):
            delattr(linear, REFERENCE)
    return summarize(layers, cfg.factor_bits)


def summarize(layers: dict[str, dict[str, float]], bits: int) -> dict[str, Any]:
    """Totals over layers: extra parameters, extra bits per weight, mean relative errors."""
    if not layers:
        return {}
    n = len(layers)
    params = int(sum(v["params"] for v in layers.values()))
    weights = int(sum(v["weights"] for v in layers.values()))
    return {
        "layers": n,
        "factor_bits": bits,
        "params": params,
        "weights": weights,
        "extra_bits_per_weight": params * bits / weights,
        "rel_error": sum(v["rel_error"] for v in layers.values()) / n,
        "rel_error_lorc": sum(v["rel_error_lorc"] for v in layers.values()) / n,
    }


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-block summaries (blockwise calibration) into one, weighted by layers."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    n = sum(p["layers"] for p in parts)
    params, weights = sum(p["params"] for p in parts), sum(p["weights"] for p in parts)
    bits = parts[0]["factor_bits"]
    return {
        "layers": n,
        "factor_bits": bits,
        "params": params,
        "weights": weights,
        "extra_bits_per_weight": params * bits / weights,
        "rel_error": sum(p["rel_error"] * p["layers"] for p in parts) / n,
        "rel_error_lorc": sum(p["rel_error_lorc"] * p["layers"] for p in parts) / n,
    }


def export_factors(linear: FakeQuantLinear) -> dict[str, Any] | None:
    """The LoRC factors as stored: int8 codes + one scale per rank component, or float."""
    if linear.lorc_u is None:
        return None
    bits = int(getattr(linear, "lorc_bits", FP_BITS))
    u_t, v = linear.lorc_u.T.float().contiguous(), linear.lorc_v.float()
    if bits >= FP_BITS:
        return {"bits": bits, "u_t": u_t.cpu().clone(), "v": v.cpu().clone()}
    out: dict[str, Any] = {"bits": bits}
    for key, matrix in (("u_t", u_t), ("v", v)):
        codes, scale, zero = quantize_codes(matrix, factor_spec(bits))
        out[key] = {"codes": codes.cpu(), "scale": scale.float().cpu(), "zero": zero.float().cpu()}
    return out


def load_factors(linear: FakeQuantLinear, saved: dict[str, Any] | None) -> None:
    """Inverse of :func:`export_factors`."""
    if saved is None:
        return
    device = linear.weight.device
    if saved["bits"] >= FP_BITS:
        u_t, v = saved["u_t"], saved["v"]
    else:
        u_t, v = (
            dequantize_codes(saved[k]["codes"], saved[k]["scale"], saved[k]["zero"],
                             saved[k]["codes"].shape[1])
            for k in ("u_t", "v")
        )
    linear.lorc_u, linear.lorc_v = u_t.T.contiguous().to(device), v.to(device)
    linear.lorc_bits = int(saved["bits"])
