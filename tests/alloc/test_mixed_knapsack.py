"""The allocators on synthetic problems: budget kept, knapsack optimal, infeasible refused."""

from __future__ import annotations

import itertools
import random

import pytest

import abqlab.alloc.knapsack as knapsack
from abqlab.alloc import ALLOCATORS
from abqlab.alloc.greedy import solve_greedy
from abqlab.alloc.knapsack import solve_knapsack
from abqlab.alloc.problem import BudgetError, Problem, check_feasible

WIDTHS = [2, 3, 4, 8]


def random_problem(seed: int, n: int = 5, fraction: float = 0.5) -> Problem:
    """Linears of random sizes; loss falls with width (≈ 4^-b, scaled per linear)."""
    rng = random.Random(seed)
    names = [f"l{i}" for i in range(n)]
    sizes = {name: rng.choice([64, 128, 192, 512]) for name in names}
    cost = {name: {b: sizes[name] * (b * 8 + 32) for b in WIDTHS} for name in names}
    loss = {name: {b: rng.uniform(0.1, 5.0) * 4.0**-b for b in WIDTHS} for name in names}
    least = sum(c[2] for c in cost.values())
    most = sum(c[8] for c in cost.values())
    budget = int(least + fraction * (most - least))
    return Problem(names, WIDTHS, cost, loss, budget, sum(sizes.values()) * 8)


def brute_force(problem: Problem) -> float:
    best = float("inf")
    for combo in itertools.product(WIDTHS, repeat=len(problem.names)):
        bits = dict(zip(problem.names, combo, strict=True))
        if problem.total_cost(bits) <= problem.budget:
            best = min(best, problem.total_loss(bits))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7])
def test_knapsack_is_optimal_and_within_budget(seed: int, fraction: float) -> None:
    problem = random_problem(seed, fraction=fraction)
    bits = solve_knapsack(problem)
    assert problem.total_cost(bits) <= problem.budget
    assert problem.total_loss(bits) == pytest.approx(brute_force(problem), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_greedy_is_within_budget_and_never_beats_the_optimum(seed: int) -> None:
    problem = random_problem(seed, fraction=0.4)
    bits = solve_greedy(problem)
    assert problem.total_cost(bits) <= problem.budget
    assert problem.total_loss(bits) >= problem.total_loss(solve_knapsack(problem)) * (1 - 1e-9)


def test_coarse_table_still_fits_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = random_problem(3, n=8, fraction=0.5)
    exact = problem.total_loss(solve_knapsack(problem))
    monkeypatch.setattr(knapsack, "MAX_CELLS", 7)  # costs rounded up to a coarse unit
    bits = solve_knapsack(problem)
    assert problem.total_cost(bits) <= problem.budget
    assert problem.total_loss(bits) >= exact * (1 - 1e-9)


def test_beats_uniform_of_the_same_bytes() -> None:
    """At exactly the cost of uniform 3 bits, the knapsack's total loss is no larger."""
    problem = random_problem(1, n=6)
    problem.budget = problem.total_cost(problem.uniform(3))
    bits = solve_knapsack(problem)
    assert problem.total_cost(bits) <= problem.budget
    assert problem.total_loss(bits) <= problem.total_loss(problem.uniform(3))


def test_budget_below_the_smallest_widths_is_refused() -> None:
    problem = random_problem(0)
    problem.budget = problem.min_cost() - 1
    with pytest.raises(BudgetError, match="below the smallest allocation"):
        check_feasible(problem)


def test_registry_names_the_allocators() -> None:
    assert ALLOCATORS.names() == ["greedy", "knapsack", "learned", "search"]
    assert ALLOCATORS.get("knapsack") is solve_knapsack
    with pytest.raises(KeyError, match="did you mean knapsack"):
        ALLOCATORS.get("knapsak")
