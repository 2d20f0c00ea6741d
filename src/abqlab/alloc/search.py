"""Search allocation (EvoPress-like, one mutation at a time) on the measured joint KL.

From the better of the knapsack allocation and the widest uniform one within the budget, each
step moves one random linear one candidate width up and another one width down (or only up,
when the budget has room), keeps the move if the whole model's KL to the float model on the
calibration windows drops, and undoes it otherwise. No relaxation, no additive proxy: every
allocation it keeps was measured. ``quant.budget.steps`` counts the evaluations.
"""

from __future__ import annotations

import random

import torch
from tqdm.auto import tqdm

from abqlab.alloc.learned import Windows, starting_points
from abqlab.alloc.problem import AllocContext, Problem
from abqlab.alloc.sensitivity import swap_weights

TRIES = 100  # random draws for a move that fits the budget


class Evaluator:
    """The KL of a hard allocation, each (linear, width) quantized once (``context.weights``)."""

    def __init__(self, problem: Problem, context: AllocContext) -> None:
        self.model = context.loaded.model
        self.candidates = context.weights
        self.windows = Windows(self.model, context.windows, context.loaded.device)

    @torch.no_grad()
    def kl(self, bits: dict[str, int]) -> float:
        chosen = {n: self.candidates.weight(n, b) for n, b in bits.items()}
        originals = swap_weights(self.model, chosen)
        try:
            return self.windows.kl()
        finally:
            swap_weights(self.model, originals)


def neighbour(problem: Problem, bits: dict[str, int], rng: random.Random) -> dict[str, int] | None:
    """One linear a width up and (unless there is room) another a width down, within budget."""
    widths = problem.candidates
    for _ in range(TRIES):
        up, down = rng.sample(problem.names, 2)
        moved = dict(bits)
        if bits[up] == widths[-1]:
            continue
        moved[up] = widths[widths.index(bits[up]) + 1]
        if problem.total_cost(moved) > problem.budget:
            if bits[down] == widths[0]:
                continue
            moved[down] = widths[widths.index(bits[down]) - 1]
        if problem.total_cost(moved) <= problem.budget:
            return moved
    return None


def solve_search(problem: Problem, context: AllocContext) -> dict[str, int]:
    """The allocation with the least measured KL found by ``steps`` accepted-if-better moves."""
    if context is None:
        raise ValueError("the search allocator needs the model and calibration windows")
    evaluator = Evaluator(problem, context)
    rng = random.Random(context.settings.seed)
    scored = [(evaluator.kl(bits), bits) for bits in starting_points(problem)]
    best_kl, best = min(scored, key=lambda pair: pair[0])
    context.curve.append({"step": -1, "kl": best_kl})
    for step in tqdm(range(context.settings.steps), desc="allocate (search)", unit="move"):
        moved = neighbour(problem, best, rng)
        if moved is None:
            break
        kl = evaluator.kl(moved)
        if kl < best_kl:
            best_kl, best = kl, moved
        context.curve.append({"step": step, "kl": kl, "best_kl": best_kl})
    return best
