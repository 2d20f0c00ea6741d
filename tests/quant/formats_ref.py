"""Reference element grids written from the OCP specs (value lists and a brute-force RNE)."""

from __future__ import annotations

import torch

# magnitudes in code order (exponent field, then mantissa), OCP MX v1.0 §5.3
E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def minifloat_values(exp_bits: int, man_bits: int, bias: int) -> list[float]:
    """Every finite magnitude of a format without specials, in code order."""
    out = []
    for field in range(2**exp_bits):
        for m in range(2**man_bits):
            if field == 0:
                out.append(m / 2**man_bits * 2.0 ** (1 - bias))
            else:
                out.append((1 + m / 2**man_bits) * 2.0 ** (field - bias))
    return out


def nearest_even(x: torch.Tensor, magnitudes: list[float]) -> torch.Tensor:
    """Brute force: the nearest magnitude (ties to the even code), sign kept, saturating."""
    grid = torch.tensor(magnitudes, dtype=torch.float64)
    a = x.double().abs().clamp(max=float(grid.max()))
    dist = (a[..., None] - grid).abs()
    best = dist.min(dim=-1, keepdim=True).values
    candidates = dist == best
    codes = torch.arange(len(magnitudes))
    # among tied candidates, prefer an even code (mantissa LSB 0)
    score = candidates.to(torch.int64) * 2 + (codes % 2 == 0).to(torch.int64)
    pick = torch.where(candidates, score, torch.full_like(score, -1)).argmax(dim=-1)
    return torch.copysign(grid[pick], x.double()).float()
