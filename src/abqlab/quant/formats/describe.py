"""A run's number formats in words, recorded with its calibration summary (result.json)."""

from __future__ import annotations

from typing import Any

from abqlab.quant.formats import get_format

FP_BITS = 16


def granularity(group: int, token: bool = False) -> str:
    if group == 0:
        return "per-tensor"
    if group == -1:
        return "per-token" if token else "per-channel"
    return f"g{group}"


def side(fmt: str, bits: int, sym: bool, group: int, token: bool) -> str:
    if bits == FP_BITS:
        return "float"
    if fmt == "int":
        return f"int{bits} {'sym' if sym else 'asym'} {granularity(group, token)}"
    block = get_format(fmt).block
    return fmt if block is not None else f"{fmt} {granularity(group, token)}"


def describe(q: Any) -> dict[str, str]:
    """Weights, activations and KV cache of a quant config, e.g. ``fp4_e2m1 g128 m2``."""
    weights = side(q.w_format, q.w_bits, q.w_sym, q.w_group, False)
    if q.w_bits != FP_BITS and q.w_scale_rule != "none":
        weights += f" {q.w_scale_rule}"
    kv = {r: b for r, b in (("q", q.q_bits), ("k", q.k_bits), ("v", q.v_bits)) if b != FP_BITS}
    if kv:
        fmt = q.kv_format if q.kv_format != "int" else f"int {'sym' if q.kv_sym else 'asym'}"
        roles = " ".join(f"{r}{b}" for r, b in kv.items())
        cache = f"{roles} {fmt} per-{q.kv_granularity}"
    else:
        cache = "float"
    return {
        "weights": weights,
        "activations": side(q.a_format, q.a_bits, q.a_sym, q.a_group, True),
        "kv_cache": cache,
    }
