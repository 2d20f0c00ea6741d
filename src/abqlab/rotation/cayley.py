"""A learnable orthogonal matrix: the Cayley transform of a skew-symmetric parameter.

R = (I + A)⁻¹ (I − A) with A = U − Uᵀ (U strictly upper triangular, learnable) is orthogonal for
every A, and R = I at A = 0, so training starts from the rotation already in the weights
(SpinQuant learns its rotations with a Cayley parametrisation too, by Cayley SGD on the manifold;
here plain AdamW on A, which keeps R exactly orthogonal up to the solve's rounding).
"""

from __future__ import annotations

import torch
from torch import nn


class CayleyRotation(nn.Module):
    """An n × n orthogonal matrix with n(n − 1)/2 free parameters, identity at start."""

    def __init__(self, n: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.n = n
        self.theta = nn.Parameter(torch.zeros(n, n, device=device))

    def skew(self) -> torch.Tensor:
        upper = torch.triu(self.theta, diagonal=1)
        return upper - upper.T

    def forward(self) -> torch.Tensor:
        a = self.skew()
        eye = torch.eye(self.n, device=a.device, dtype=a.dtype)
        return torch.linalg.solve(eye + a, eye - a)

    @torch.no_grad()
    def reset(self) -> None:
        self.theta.zero_()
