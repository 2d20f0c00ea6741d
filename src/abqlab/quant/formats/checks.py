"""Which format settings make sense together; one line per problem (spec and config level)."""

from __future__ import annotations

import difflib
from typing import Any

from abqlab.quant.formats import FORMATS, get_format
from abqlab.quant.formats.base import SCALE_RULES

FP_BITS = 16
KV_GRANULARITIES = ("token", "head")


def spec_problem(spec: Any) -> str | None:
    """Why a ``QuantSpec``'s format fields cannot go together, or None."""
    if spec.fmt not in FORMATS:
        return FORMATS.unknown_message(spec.fmt)
    fmt = get_format(spec.fmt)
    if spec.scale_rule not in SCALE_RULES:
        return f"scale_rule={spec.scale_rule}: allowed: {', '.join(SCALE_RULES)}"
    if spec.scale_rule not in fmt.scale_rules:
        return f"scale_rule={spec.scale_rule}: {fmt.name} scales are fixed by the format (none)"
    if not fmt.is_float:
        return None
    if spec.bits != fmt.bits:
        return f"bits={spec.bits}: {fmt.name} has {fmt.bits} bits"
    if not spec.sym or spec.bit_balance:
        return f"{fmt.name} is a sign-magnitude float: sym=True, no bit balance"
    if fmt.block is not None and (spec.group != fmt.block or spec.partial_group):
        return f"group={spec.group}: {fmt.name} uses whole blocks of {fmt.block}"
    return None


def unknown(key: str, name: str) -> tuple[str, Any, str]:
    """An unknown format name: the allowed names and close matches."""
    close = difflib.get_close_matches(name, FORMATS.names(), n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return key, name, ", ".join(FORMATS.names()) + hint


def check_side(q: Any, side: str) -> tuple[str, Any, str] | None:
    """Problems of the weight (``w``) or activation (``a``) format: (key, value, allowed)."""
    name, bits, group = q[f"{side}_format"], q[f"{side}_bits"], q[f"{side}_group"]
    if name not in FORMATS:
        return unknown(f"quant.{side}_format", name)
    fmt = get_format(name)
    if not fmt.is_float:
        return None
    if bits != fmt.bits:
        hint = f"{fmt.bits} (the width of {side}_format={name})"
        keep = f"; or {side}_format=int with {side}_bits=16 for float"
        return f"quant.{side}_bits", bits, hint + (keep if bits == FP_BITS else "")
    if fmt.block is not None and group != fmt.block:
        return f"quant.{side}_group", group, f"{fmt.block} (the block of {side}_format={name})"
    if side == "w" and q.w_bit_balance:
        return "quant.w_bit_balance", True, f"false for the float format {name}"
    if side == "w" and fmt.block is not None and q.w_partial_group:
        return "quant.w_partial_group", True, f"false: {name} blocks are whole"
    return None


def check_scale_rule(q: Any) -> tuple[str, Any, str] | None:
    rule = q.w_scale_rule
    if rule not in SCALE_RULES:
        return "quant.w_scale_rule", rule, ", ".join(SCALE_RULES)
    if rule == "none":
        return None
    if q.w_bits == FP_BITS:
        return "quant.w_scale_rule", rule, "none when weights stay in float (w_bits=16)"
    fmt = get_format(q.w_format)
    if rule not in fmt.scale_rules:
        return "quant.w_scale_rule", rule, f"none: {fmt.name} scales are already constrained"
    if rule == "m2" and q.w_group <= 0:
        return "quant.w_scale_rule", rule, "m1 or none: m2 needs groups (w_group > 0)"
    return None


def check_kv(q: Any) -> tuple[str, Any, str] | None:
    if q.kv_granularity not in KV_GRANULARITIES:
        return "quant.kv_granularity", q.kv_granularity, ", ".join(KV_GRANULARITIES)
    name = q.kv_format
    if name not in FORMATS:
        return unknown("quant.kv_format", name)
    fmt = get_format(name)
    if fmt.block is not None:
        return "quant.kv_format", name, "int or a minifloat (fp8_e4m3, fp8_e5m2, ...)"
    for key in ("q_bits", "k_bits", "v_bits"):
        if fmt.is_float and q[key] not in (FP_BITS, fmt.bits):
            return f"quant.{key}", q[key], f"{fmt.bits} (kv_format={name}) or 16"
    return None


def check_quant_formats(q: Any) -> tuple[str, Any, str] | None:
    """First problem of a quant config's format fields, or None."""
    for check in (lambda: check_side(q, "w"), lambda: check_side(q, "a"),
                  lambda: check_scale_rule(q), lambda: check_kv(q)):
        problem = check()
        if problem:
            return problem
    return None


def check_calib_formats(q: Any, calib: Any) -> tuple[str, Any, str] | None:
    """Calibration settings that cannot work with the chosen formats (before the model loads)."""
    gptq = dict(calib.components.get("gptq") or {}) if "gptq" in calib.components else None
    dynamic = gptq is not None and gptq.get("enabled", True) and gptq.get("groups") == "dynamic"
    if dynamic and (q.w_format == "nvfp4" or q.w_scale_rule == "m2"):
        why = "nvfp4's per-tensor scale" if q.w_format == "nvfp4" else "m2's per-row scale"
        return ("calib.components.gptq.groups", "dynamic",
                f"static: {why} needs every group of the row up front")
    lorc = calib.get("lorc")
    if lorc is not None:
        wanted = lorc.rank > 0 or any(r > 0 for r in lorc.ranks.values())
        if lorc.rank < 0 or any(r < 0 for r in lorc.ranks.values()):
            return "calib.lorc.rank", lorc.rank, "ranks >= 0 (0: off)"
        if lorc.factor_bits not in (8, FP_BITS):
            return "calib.lorc.factor_bits", lorc.factor_bits, "8 or 16 (float factors)"
        if wanted and q.w_bits == FP_BITS:
            return "calib.lorc.rank", lorc.rank, "0 when weights stay in float (w_bits=16)"
        if wanted and calib.method == "load":
            return ("calib.lorc.rank", lorc.rank,
                    "0 with calib=load: a saved model carries its own LoRC factors")
    return None
