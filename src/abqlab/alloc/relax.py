"""Relaxations of a linear's choice among quantized candidate weights (the learned allocator's).

A linear with candidates Q_b(W) and choice probabilities p_b uses in the soft forward

- ``linear``: Σ_b p_b Q_b(W). Averaging candidates averages their rounding errors away, so an
  interior mixture can be closer to W than any candidate: on SmolLM2 the soft KL fell to a
  third of the hard one while every rounding of it got worse (a relaxation gap).
- ``rms``: W + sign(m) · √(Σ_b p_b ε_b²) with ε_b = Q_b(W) − W and m = Σ_b p_b ε_b. Each weight's
  squared error is the expected squared error of drawing one candidate by p, so no mixture is
  more accurate than the candidates it mixes; at a one-hot p it is exactly that candidate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RELAXATIONS = ("rms", "linear")
TINY = 1e-30  # keeps √ differentiable where every candidate is exact


def mix_weight(
    relaxation: str, probs: torch.Tensor, base: torch.Tensor, errors: torch.Tensor
) -> torch.Tensor:
    """The relaxed weight for candidate probabilities ``probs`` [k] (see the module doc).
    ``errors`` [k, out, in] holds Q_b(W) − W, ``base`` [out, in] holds W."""
    mean = torch.einsum("k,koi->oi", probs, errors)
    if relaxation == "linear":
        return base + mean
    if relaxation == "rms":
        spread = torch.einsum("k,koi->oi", probs, errors.square())
        direction = torch.where(mean >= 0, 1.0, -1.0).to(base.dtype)  # a tie is not an exact weight
        return base + direction * (spread + TINY).sqrt()
    raise ValueError(f"unknown relaxation {relaxation!r}; choose one of {RELAXATIONS}")


class MixtureLinear(nn.Module):
    """A linear whose weight relaxes the choice among fixed quantized weights by the softmax of
    its logits (minus ``offset``, the budget's price of each width), or is the one ``hard``
    (one-hot) picks."""

    def __init__(
        self, linear: nn.Linear, stack: torch.Tensor, logits: torch.Tensor, relaxation: str
    ) -> None:
        super().__init__()
        if relaxation not in RELAXATIONS:
            raise ValueError(f"unknown relaxation {relaxation!r}; choose one of {RELAXATIONS}")
        self.linear = linear
        base = linear.weight.detach().to(stack.dtype)
        self.register_buffer("base", base)
        self.register_buffer("errors", stack - base)  # [k, out, in]
        self.logits = nn.Parameter(logits.to(stack.device))
        self.offset = torch.zeros_like(self.logits.detach())
        self.relaxation = relaxation
        self.tau = 1.0
        self.hard: torch.Tensor | None = None

    def scores(self) -> torch.Tensor:
        return (self.logits - self.offset) / self.tau

    def probs(self) -> torch.Tensor:
        return F.softmax(self.scores(), dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hard is None:
            weight = mix_weight(self.relaxation, self.probs(), self.base, self.errors)
        else:
            weight = self.base + torch.einsum("k,koi->oi", self.hard, self.errors)
        return F.linear(x, weight.to(x.dtype), self.linear.bias)
