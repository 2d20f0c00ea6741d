"""Rotations applied to activations at run time (the "online" Hadamard of QuaRot).

``OnlineRotation`` computes x ↦ x·M for an orthogonal M = diag(d) · (F ⊗ K) with d a sign vector,
F a small dense orthonormal factor (m × m) and K either the normalised Sylvester Hadamard of order
p = n / m (applied with a fast Walsh–Hadamard transform: p·log2(p) additions per row) or the
identity. The same module gives the dense matrix (``matrix()``) that the weights absorb, so the
online and offline sides can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from abqlab.rotation.hadamard import (
    factorization,
    is_power_of_two,
    random_orthogonal,
    random_signs,
    small_hadamard,
)


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh–Hadamard transform over the last dim (a power of two): x·H_p."""
    p = x.shape[-1]
    lead = x.shape[:-1]
    h = 1
    while h < p:
        pairs = x.reshape(*lead, p // (2 * h), 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2).reshape(*lead, p)
        h *= 2
    return x


class OnlineRotation(nn.Module):
    """x ↦ x · diag(d) · (F ⊗ K) over the last dim; see the module docstring."""

    def __init__(
        self, signs: torch.Tensor, factor: torch.Tensor, inner: int, inner_hadamard: bool
    ) -> None:
        super().__init__()
        m = factor.shape[0]
        if signs.numel() != m * inner:
            raise ValueError(f"signs ({signs.numel()}) must have m · p = {m} · {inner} entries")
        if inner_hadamard and not is_power_of_two(inner):
            raise ValueError(f"the inner Hadamard needs a power of two, got {inner}")
        self.register_buffer("signs", signs.float().clone())
        self.register_buffer("factor", factor.float().clone())
        self.inner = inner
        self.inner_hadamard = inner_hadamard

    @property
    def size(self) -> int:
        return self.signs.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, m = x.shape[:-1], self.factor.shape[0]
        y = (x * self.signs.to(x.dtype)).reshape(*lead, m, self.inner)
        if self.inner_hadamard and self.inner > 1:
            y = fwht(y) / math.sqrt(self.inner)
        if m > 1:
            y = torch.matmul(self.factor.T.to(x.dtype), y)
        return y.reshape(*lead, m * self.inner)

    @torch.no_grad()
    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The dense orthogonal M with forward(x) = x · M."""
        return self(torch.eye(self.size, dtype=dtype, device=self.signs.device))

    def extra_repr(self) -> str:
        inner = f"H{self.inner}" if self.inner_hadamard else f"I{self.inner}"
        return f"n={self.size}, factor={self.factor.shape[0]}, inner={inner}"

    def fields(self) -> dict[str, Any]:
        """What rebuilds this rotation (``OnlineRotation.from_fields``); tensors cloned."""
        return {"signs": self.signs.detach().clone(), "factor": self.factor.detach().clone(),
                "inner": int(self.inner), "inner_hadamard": bool(self.inner_hadamard)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> OnlineRotation:
        """The rotation that ``fields()`` describes."""
        return cls(fields["signs"], fields["factor"], int(fields["inner"]),
                   bool(fields["inner_hadamard"]))

    def mults_per_row(self) -> dict[str, int]:
        """Arithmetic per rotated row: sign flips, FWHT additions, dense multiply-adds."""
        m, p = self.factor.shape[0], self.inner
        adds = m * p * int(math.log2(p)) if self.inner_hadamard and p > 1 else 0
        return {"sign_mults": self.size, "fwht_adds": adds, "dense_macs": m * m * p if m > 1 else 0}


def orthonormal_hadamard(n: int, generator: torch.Generator, kind: str) -> OnlineRotation:
    """A randomised Hadamard rotation of size n (``kind=hadamard``; a random orthogonal one when
    no Hadamard of order n is known) or a random orthogonal one (``kind=random``)."""
    split = factorization(n) if kind == "hadamard" else None
    signs = random_signs(n, generator)
    if split is None:
        return OnlineRotation(torch.ones(n), random_orthogonal(n, generator), 1, False)
    m, p = split
    factor = small_hadamard(m) / math.sqrt(m)
    return OnlineRotation(signs, factor, p, True)


def across_heads(
    heads: int, head_dim: int, generator: torch.Generator, kind: str
) -> OnlineRotation:
    """(F ⊗ I_head_dim): mixes the heads, leaves each head's channels in place (QuaRot's online
    rotation before o_proj, whose per-head part is absorbed offline)."""
    split = factorization(heads) if kind == "hadamard" else None
    if split is None:
        factor = random_orthogonal(heads, generator)
    else:
        factor = torch.kron(small_hadamard(split[0]), small_hadamard(split[1])) / math.sqrt(heads)
    return OnlineRotation(torch.ones(heads * head_dim), factor, head_dim, False)
