"""Greedy allocation: from the smallest widths, repeatedly take the upgrade with the largest loss
decrease per storage bit that still fits the budget."""

from __future__ import annotations

from abqlab.alloc.problem import Problem


def best_upgrade(problem: Problem, bits: dict[str, int], room: int) -> tuple[str, int] | None:
    """The (linear, width) upgrade with the best loss decrease per added bit that fits."""
    best, best_rate = None, 0.0
    for name in problem.names:
        now_cost, now_loss = problem.cost[name][bits[name]], problem.loss[name][bits[name]]
        for width, cost in problem.cost[name].items():
            extra = cost - now_cost
            if extra <= 0 or extra > room:
                continue
            rate = (now_loss - problem.loss[name][width]) / extra
            if rate > best_rate:
                best, best_rate = (name, width), rate
    return best


def solve_greedy(problem: Problem, context: object = None) -> dict[str, int]:
    """Marginal-gain greedy: fast, within the budget, not always optimal."""
    del context
    bits = {n: min(problem.cost[n], key=problem.cost[n].get) for n in problem.names}
    while True:
        step = best_upgrade(problem, bits, problem.budget - problem.total_cost(bits))
        if step is None:
            return bits
        bits[step[0]] = step[1]
