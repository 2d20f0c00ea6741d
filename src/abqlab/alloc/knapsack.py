"""Multiple-choice knapsack by dynamic programming over the budget, in units of storage bits.

Costs are counted above every linear's smallest width, in units of their greatest common
divisor; when that table would exceed ``MAX_CELLS`` the unit grows and each cost is rounded
up to it (never down), so the answer always fits the budget and is exact when not coarsened.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from abqlab.alloc.problem import Problem

MAX_CELLS = 400_000


def cost_unit(increments: list[int], capacity: int) -> int:
    """The DP's unit: the gcd of the cost increments, coarser when the table would be too big."""
    unit = reduce(math.gcd, [d for d in increments if d > 0], 0) or 1
    return max(unit, -(-capacity // MAX_CELLS))


def solve_knapsack(problem: Problem, context: object = None) -> dict[str, int]:
    """Minimal Σ loss with Σ cost ≤ budget; one width per linear."""
    del context
    base = {n: min(problem.cost[n].values()) for n in problem.names}
    capacity = problem.budget - sum(base.values())
    options = [sorted(problem.cost[n].items()) for n in problem.names]
    pairs = zip(problem.names, options, strict=True)
    increments = [cost - base[n] for n, row in pairs for _, cost in row]
    unit = cost_unit(increments, capacity)
    cells = capacity // unit + 1
    best = np.zeros(cells)  # best[c]: least loss of the items so far using at most c units
    choices = np.zeros((len(problem.names), cells), dtype=np.int8)
    for i, name in enumerate(problem.names):
        new = np.full(cells, np.inf)
        for k, (bits, cost) in enumerate(options[i]):
            step = -(-(cost - base[name]) // unit)
            if step >= cells:
                continue
            candidate = np.full(cells, np.inf)
            candidate[step:] = best[: cells - step] + problem.loss[name][bits]
            better = candidate < new
            new[better], choices[i, better] = candidate[better], k
        best = new
    return backtrack(problem, options, choices, base, unit, cells - 1)


def backtrack(
    problem: Problem, options: list, choices: np.ndarray, base: dict[str, int], unit: int, cell: int
) -> dict[str, int]:
    """The widths chosen along the DP's best path from the last cell."""
    bits: dict[str, int] = {}
    for i in range(len(problem.names) - 1, -1, -1):
        name = problem.names[i]
        width, cost = options[i][int(choices[i, cell])]
        bits[name] = width
        cell -= -(-(cost - base[name]) // unit)
    return {n: bits[n] for n in problem.names}
