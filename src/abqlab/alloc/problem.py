"""The allocation problem: per linear, candidate widths with a storage cost and a loss."""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any

from abqlab.alloc.size import FLOAT_BITS, weight_bits
from abqlab.config import QuantConfig
from abqlab.quant.apply import weight_spec
from abqlab.quant.spec import QuantSpec


class BudgetError(ValueError):
    """A budget no allocation can meet (or an allocation that broke its budget)."""


@dataclass
class Problem:
    """Choose one width per linear so that Σ cost ≤ ``budget`` (bits) and Σ loss is minimal."""

    names: list[str]
    candidates: list[int]
    cost: dict[str, dict[int, int]]  # storage bits of the weight and its grid
    loss: dict[str, dict[int, float]]
    budget: int
    weights: int  # weights of the allocated linears

    def total_cost(self, bits: dict[str, int]) -> int:
        return sum(self.cost[n][bits[n]] for n in self.names)

    def total_loss(self, bits: dict[str, int]) -> float:
        return sum(self.loss[n][bits[n]] for n in self.names)

    def min_cost(self) -> int:
        return sum(min(row.values()) for row in (self.cost[n] for n in self.names))

    def uniform(self, bits: int) -> dict[str, int]:
        return dict.fromkeys(self.names, bits)


def candidate_specs(quant: QuantConfig, candidates: list[int]) -> dict[int, QuantSpec]:
    """The weight quantizer at each candidate width (the run's format, symmetry, groups)."""
    base = dataclasses.replace(quant, layer_bits={})
    return {b: weight_spec(dataclasses.replace(base, w_bits=b)) for b in sorted(set(candidates))}


def linear_shapes(model_config: Any, prefix: str = "model.layers") -> dict[str, tuple[int, int]]:
    """[out, in] of every linear of a LLaMA-like decoder, by full name, from its config alone."""
    hidden, inter = model_config.hidden_size, model_config.intermediate_size
    heads = model_config.num_attention_heads
    kv = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or hidden // heads
    local = {
        "self_attn.q_proj": (heads * head_dim, hidden),
        "self_attn.k_proj": (kv * head_dim, hidden),
        "self_attn.v_proj": (kv * head_dim, hidden),
        "self_attn.o_proj": (hidden, heads * head_dim),
        "mlp.gate_proj": (inter, hidden),
        "mlp.up_proj": (inter, hidden),
        "mlp.down_proj": (hidden, inter),
    }
    return {
        f"{prefix}.{i}.{path}": shape
        for i in range(model_config.num_hidden_layers)
        for path, shape in local.items()
    }


def allocated(shapes: dict[str, tuple[int, int]], skip: list[str]) -> dict[str, tuple[int, int]]:
    """The linears the budget allocates: all but those matching ``quant.skip``."""
    return {n: s for n, s in shapes.items() if not any(fnmatch.fnmatch(n, p) for p in skip)}


def budget_bits(quant: QuantConfig, shapes: dict[str, tuple[int, int]], other_bits: int) -> int:
    """The bits the allocated linears may use: ``avg_bits`` × their weights, or ``bytes`` × 8
    minus everything else (``other_bits``: float leftovers at 16 bits)."""
    weights = sum(r * c for r, c in shapes.values())
    if quant.budget.avg_bits is not None:
        return int(quant.budget.avg_bits * weights)
    return int(quant.budget.bytes) * 8 - other_bits


def build_problem(
    quant: QuantConfig,
    shapes: dict[str, tuple[int, int]],
    loss: dict[str, dict[int, float]],
    other_bits: int,
) -> Problem:
    """The problem for the allocated linears ``shapes``; raises BudgetError when infeasible."""
    specs = candidate_specs(quant, list(quant.budget.candidates))
    cost = {n: {b: weight_bits(r, c, s) for b, s in specs.items()} for n, (r, c) in shapes.items()}
    problem = Problem(
        names=list(shapes),
        candidates=sorted(specs),
        cost=cost,
        loss=loss,
        budget=budget_bits(quant, shapes, other_bits),
        weights=sum(r * c for r, c in shapes.values()),
    )
    check_feasible(problem)
    return problem


def check_feasible(problem: Problem) -> None:
    """Refuse a budget below every linear at its smallest candidate width."""
    least = problem.min_cost()
    if problem.budget < least:
        raise BudgetError(
            f"budget of {problem.budget / problem.weights:.4f} bits per weight "
            f"({problem.budget // 8} bytes for the quantized linears) is below the smallest "
            f"allocation, every linear at {min(problem.candidates)} bits: "
            f"{least / problem.weights:.4f} bits per weight ({-(-least // 8)} bytes)"
        )


def other_bits_estimate(model_config: Any, shapes: dict[str, tuple[int, int]]) -> int:
    """Bits of everything but the allocated linears, from the config (before any load):
    embeddings (and an untied head), norms, and skipped linears at 16 bits."""
    all_shapes = linear_shapes(model_config)
    skipped = sum(r * c for n, (r, c) in all_shapes.items() if n not in shapes)
    hidden, vocab = model_config.hidden_size, model_config.vocab_size
    embed = vocab * hidden * (1 if getattr(model_config, "tie_word_embeddings", False) else 2)
    norms = hidden * (2 * model_config.num_hidden_layers + 1)
    return FLOAT_BITS * (embed + norms + skipped)


@dataclass
class AllocContext:
    """What an allocator that trains (``learned``) needs besides the problem."""

    loaded: Any  # LoadedModel, float weights
    windows: Any  # calibration windows [n, seqlen]
    weights: Any  # CandidateWeights: each linear at each candidate width
    settings: Any  # BudgetConfig
    curve: list = dataclasses.field(default_factory=list)  # what a training allocator records
