"""Learned allocation (picoLLM's idea): a differentiable relaxation over the candidate widths.

Each allocated linear's weight relaxes the choice among its quantized candidates (RTN or GPTQ:
``candidates.py``) by p = softmax((logits − λ · cost) / τ) (``relax.py``: the ``rms`` relaxation
by default, ``linear`` the plain mixture), τ annealed from 1 to 0.1 so p hardens. The size
penalty is a Lagrangian one: before every step the price λ ≥ 0 of a byte is set by bisection so
that the expected size E_p[size] meets the budget exactly (λ = 0 when it is under). The logits
(Adam) are trained on the KL to the float model on the calibration windows. After every step the
argmax widths are rounded to the budget (downgrades losing the least log-probability per bit
saved, then upgrades gaining the most) and that hard allocation's KL is measured. Logits start
on the better (least hard KL) of the knapsack allocation of the sensitivities and the widest
uniform allocation within the budget; the result is the hard allocation with the
least KL, the knapsack start and the widest uniform allocation within the budget included, so
on the calibration windows it is never worse than either. (A straight-through variant, hard
forward with the softmax's gradient, made every step worse on the 2-block model: the first-order
estimate of a width switch is poor.) Measured on SmolLM2 at 3.27 bits (GPTQ candidates,
experiments/mixed_precision/learned_allocation.jsonl): neither relaxation found a hard
allocation better than its knapsack start in 12 steps.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from abqlab.alloc.knapsack import solve_knapsack
from abqlab.alloc.problem import AllocContext, Problem
from abqlab.alloc.relax import MixtureLinear
from abqlab.alloc.sensitivity import CHUNK
from abqlab.models.arch import get_module, set_module

log = logging.getLogger(__name__)
TAU_END = 0.1
START_LOGIT = 2.0  # the start's logit above the other widths' (p ≈ 0.7 of 4 at τ = 1)


def kl_loss(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(reference ‖ softmax(logits)); ``reference`` holds log-probabilities."""
    logprobs = F.log_softmax(logits.float(), dim=-1)
    return (reference.exp() * (reference - logprobs)).sum(-1).mean()


def start_logits(problem: Problem, bits: dict[str, int], name: str) -> torch.Tensor:
    return START_LOGIT * torch.tensor([float(b == bits[name]) for b in problem.candidates])


def install(problem: Problem, context: AllocContext, start: dict[str, int]) -> dict:
    """Swap every allocated linear for a ``MixtureLinear`` whose logits favour ``start``."""
    mixes = {}
    relaxation = context.settings.relaxation
    for name in problem.names:
        linear = get_module(context.loaded.model, name)
        stack = torch.stack([context.weights.weight(name, b) for b in problem.candidates])
        logits = start_logits(problem, start, name)
        mixes[name] = MixtureLinear(linear, stack, logits, relaxation)
        set_module(context.loaded.model, name, mixes[name])
    return mixes


def set_hard(problem: Problem, mixes: dict, bits: dict[str, int] | None) -> None:
    """Make every mixture use its linear's width in ``bits`` (None: the soft mixture)."""
    for name, mix in mixes.items():
        if bits is None:
            mix.hard = None
            continue
        hard = torch.tensor([float(b == bits[name]) for b in problem.candidates])
        mix.hard = hard.to(mix.logits.device)


def current_scores(mixes: dict) -> dict[str, torch.Tensor]:
    return {n: F.log_softmax(m.scores().detach(), dim=0) for n, m in mixes.items()}


def relative_costs(problem: Problem) -> torch.Tensor:
    """[linear, width] storage costs in units of the budget's share of one linear."""
    share = problem.budget / len(problem.names)
    rows = [[problem.cost[n][b] / share for b in problem.candidates] for n in problem.names]
    return torch.tensor(rows, dtype=torch.float64)


@torch.no_grad()
def price_to_budget(mixes: dict, costs: torch.Tensor, iterations: int = 60) -> float:
    """Set every mixture's offset to λ · cost with λ ≥ 0 the least price at which the expected
    size Σ p · cost is at most the budget (one share per linear); returns the expected size."""
    logits = torch.stack([m.logits.detach().cpu() for m in mixes.values()]).double()
    tau = next(iter(mixes.values())).tau

    def expected(price: float) -> float:
        probs = F.softmax((logits - price * costs) / tau, dim=1)
        return float((probs * costs).sum()) / len(costs)

    low, high = 0.0, 1.0
    if expected(low) > 1.0:
        while expected(high) > 1.0 and high < 1e6:
            low, high = high, 2 * high
        for _ in range(iterations):
            mid = (low + high) / 2
            low, high = (mid, high) if expected(mid) > 1.0 else (low, mid)
    price = high if expected(low) > 1.0 else low
    for mix, row in zip(mixes.values(), costs, strict=True):
        mix.offset = (price * row).to(mix.logits.dtype).to(mix.logits.device)
    return expected(price)


class Windows:
    """The calibration windows in chunks, with the float model's log-probabilities of each."""

    @torch.no_grad()
    def __init__(self, model: nn.Module, windows: torch.Tensor, device: torch.device) -> None:
        self.model = model
        self.chunks = [c.to(device) for c in windows.split(CHUNK)]
        self.total = len(windows)
        self.references = [
            F.log_softmax(model(c, use_cache=False).logits.float(), dim=-1) for c in self.chunks
        ]

    def kl(self, backward: bool = False, scale: float = 1.0) -> float:
        """Mean KL over all windows; with ``backward`` its gradient (÷ ``scale``) accumulates."""
        value = 0.0
        for chunk, reference in zip(self.chunks, self.references, strict=True):
            with torch.set_grad_enabled(backward):
                kl = kl_loss(self.model(chunk, use_cache=False).logits, reference)
                kl = kl * len(chunk) / self.total
            if backward:
                (kl / scale).backward()
            value += float(kl.detach())
        return value


def starting_points(problem: Problem) -> list[dict[str, int]]:
    """The knapsack allocation and the widest uniform one within the budget (if any)."""
    budget = problem.budget
    fits = [b for b in problem.candidates if problem.total_cost(problem.uniform(b)) <= budget]
    return [solve_knapsack(problem)] + ([problem.uniform(max(fits))] if fits else [])


def train_allocation(problem: Problem, context: AllocContext) -> dict[str, int]:
    """The best hard allocation within the budget seen while training the width logits."""
    model, settings = context.loaded.model, context.settings
    data = Windows(model, context.windows, context.loaded.device)
    starts = starting_points(problem)
    mixes = install(problem, context, starts[0])
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        params = [m.logits for m in mixes.values()]
        for p in params:
            p.requires_grad_(True)
        seen = []
        for bits in starts:
            set_hard(problem, mixes, bits)
            seen.append((data.kl(), bits))
        scale = max(seen[0][0], 1e-12)
        context.curve.append({"step": -1, "kl": seen[0][0], "uniform_kl": seen[-1][0]})
        start = min(seen, key=lambda pair: pair[0])[1]  # train from the better starting point
        with torch.no_grad():
            for name, mix in mixes.items():
                mix.logits.copy_(start_logits(problem, start, name))
        optimiser = torch.optim.Adam(params, lr=settings.lr)
        costs = relative_costs(problem)
        for step in tqdm(range(settings.steps), desc="allocate (learned)", unit="step"):
            tau = TAU_END ** (step / max(settings.steps - 1, 1))
            for mix in mixes.values():
                mix.tau = tau
            size = price_to_budget(mixes, costs)
            set_hard(problem, mixes, None)
            optimiser.zero_grad()
            soft_kl = data.kl(backward=True, scale=scale)
            optimiser.step()
            price_to_budget(mixes, costs)
            bits = round_to_budget(problem, current_scores(mixes))
            set_hard(problem, mixes, bits)
            seen.append((data.kl(), bits))
            changed = sum(bits[n] != start[n] for n in problem.names)
            context.curve.append({
                "step": step, "soft_kl": soft_kl, "kl": seen[-1][0],
                "expected_size": size, "changed_from_start": changed,
            })
        best = min(seen, key=lambda pair: pair[0])
        log.info("learned allocation: KL %.4g on the calibration windows (knapsack start %.4g)",
                 best[0], seen[0][0])
        return best[1]
    finally:
        for name, mix in mixes.items():
            set_module(model, name, mix.linear)
        for p, flag in flags.items():
            p.requires_grad_(flag)


def round_to_budget(problem: Problem, logprobs: dict[str, torch.Tensor]) -> dict[str, int]:
    """Argmax widths, then downgrades while over budget, then upgrades while room is left."""
    widths = problem.candidates
    score = {n: {b: float(logprobs[n][k]) for k, b in enumerate(widths)} for n in problem.names}
    bits = {n: max(score[n], key=score[n].get) for n in problem.names}
    while problem.total_cost(bits) > problem.budget:
        moves = [
            ((score[n][bits[n]] - score[n][b]) / (problem.cost[n][bits[n]] - problem.cost[n][b]),
             n, b)
            for n in problem.names for b in widths if problem.cost[n][b] < problem.cost[n][bits[n]]
        ]
        _, name, width = min(moves)
        bits[name] = width
    while True:
        room = problem.budget - problem.total_cost(bits)
        moves = [
            ((score[n][b] - score[n][bits[n]]) / (problem.cost[n][b] - problem.cost[n][bits[n]]),
             n, b)
            for n in problem.names for b in widths
            if 0 < problem.cost[n][b] - problem.cost[n][bits[n]] <= room
        ]
        if not moves or max(moves)[0] <= 0:
            return bits
        _, name, width = max(moves)
        bits[name] = width


def solve_learned(problem: Problem, context: AllocContext) -> dict[str, int]:
    """Learned widths within the budget."""
    if context is None:
        raise ValueError("the learned allocator needs the model and calibration windows")
    return train_allocation(problem, context)
