"""Checks of ``quant.budget`` and ``quant.layer_bits`` before any model loads.

Each returns None or ``(key, value, allowed)`` for ``validate.ConfigError``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from abqlab.alloc import ALLOCATORS
from abqlab.alloc.candidates import WEIGHT_SOURCES
from abqlab.alloc.problem import (
    BudgetError,
    Problem,
    allocated,
    budget_bits,
    candidate_specs,
    check_feasible,
    linear_shapes,
    other_bits_estimate,
)
from abqlab.alloc.relax import RELAXATIONS
from abqlab.alloc.sensitivity import SENSITIVITIES
from abqlab.alloc.size import weight_bits
from abqlab.config import QuantConfig
from abqlab.quant.formats import ladder_of
from abqlab.quant.spec import FP_BITS

Finding = tuple[str, Any, str] | None
WIDTHS = tuple(range(1, 9))


def budget_set(quant: Any) -> bool:
    """Whether a budget target (``avg_bits`` or ``bytes``) is given."""
    budget = quant.get("budget") if hasattr(quant, "get") else getattr(quant, "budget", None)
    if budget is None:
        return False
    return any(getattr(budget, key, None) is not None for key in ("avg_bits", "bytes"))


def check_budget_settings(quant: Any, calib: Any) -> Finding:
    """The budget's own fields and what it cannot be combined with."""
    b = quant.budget
    if b.avg_bits is not None and b.bytes is not None:
        return "quant.budget", "avg_bits and bytes", "one of avg_bits or bytes"
    if b.allocator not in ALLOCATORS:
        return "quant.budget.allocator", b.allocator, ", ".join(ALLOCATORS.names())
    if b.sensitivity not in SENSITIVITIES:
        return "quant.budget.sensitivity", b.sensitivity, ", ".join(SENSITIVITIES)
    if b.weights not in WEIGHT_SOURCES:
        return "quant.budget.weights", b.weights, ", ".join(WEIGHT_SOURCES)
    if not b.candidates or any(w not in WIDTHS for w in b.candidates):
        return "quant.budget.candidates", list(b.candidates), "a list of widths in 1..8"
    if quant.w_bits == FP_BITS:
        return "quant.w_bits", quant.w_bits, "< 16 when a budget is set"
    ladder = ladder_of(quant.w_format)
    if ladder is not None and any(w not in ladder for w in b.candidates):
        widths = ", ".join(map(str, sorted(ladder)))
        return ("quant.budget.candidates", list(b.candidates),
                f"widths of {quant.w_format}'s family: {widths}")
    if quant.w_sym and 1 in b.candidates and not quant.w_bit_balance:
        return "quant.budget.candidates", list(b.candidates), "no 1 with w_sym=true"
    for key in ("nsamples", "seqlen", "steps"):
        if b[key] < (2 if key == "seqlen" else 1):
            return f"quant.budget.{key}", b[key], ">= 2" if key == "seqlen" else ">= 1"
    if b.lr <= 0:
        return "quant.budget.lr", b.lr, "> 0"
    if b.relaxation not in RELAXATIONS:
        return "quant.budget.relaxation", b.relaxation, ", ".join(RELAXATIONS)
    if quant.layer_bits:
        return "quant.layer_bits", "…", "empty when quant.budget is set (the budget fills it)"
    lorc = calib.get("lorc") or {}
    if lorc.get("rank", 0) or any((lorc.get("ranks") or {}).values()):
        return "calib.lorc.rank", lorc.get("rank"), "0 with quant.budget (LoRC is not budgeted)"
    return None


def check_layer_bits(quant: Any, model_config: Any, blocks: str) -> Finding:
    """``quant.layer_bits``: known linear names and widths 1..8 or 16 (a float format: the
    widths of its family)."""
    names = linear_shapes(model_config, blocks)
    ladder = ladder_of(quant.get("w_format", "int"))
    allowed = WIDTHS if ladder is None else tuple(sorted(ladder))
    shown = "1..8" if ladder is None else ", ".join(map(str, allowed))
    for name, bits in (quant.get("layer_bits") or {}).items():
        if name not in names:
            return f"quant.layer_bits.{name}", bits, f"linear names such as {next(iter(names))}"
        if bits not in (*allowed, FP_BITS):
            return f"quant.layer_bits.{name}", bits, f"{shown} or 16"
    return None


def check_allocation(quant: Any, calib: Any, model_config: Any, blocks: str) -> Finding:
    """All budget checks, feasibility included (shapes from the model config)."""
    finding = check_layer_bits(quant, model_config, blocks)
    if finding or not budget_set(quant):
        return finding
    finding = check_budget_settings(quant, calib)
    if finding:
        return finding
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(QuantConfig), quant))
    shapes = allocated(linear_shapes(model_config, blocks), list(typed.skip))
    specs = candidate_specs(typed, list(typed.budget.candidates))
    cost = {n: {b: weight_bits(r, c, s) for b, s in specs.items()} for n, (r, c) in shapes.items()}
    weights = sum(r * c for r, c in shapes.values())
    other = other_bits_estimate(model_config, shapes)
    target = budget_bits(typed, shapes, other)
    try:
        check_feasible(Problem(list(shapes), sorted(specs), cost, {}, target, weights))
    except BudgetError as error:
        key = "avg_bits" if typed.budget.avg_bits is not None else "bytes"
        value = typed.budget.avg_bits if key == "avg_bits" else typed.budget.bytes
        return f"quant.budget.{key}", value, f"a feasible budget ({error})"
    return None
