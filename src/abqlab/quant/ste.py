"""Straight-through estimators: forward rounds, backward passes the gradient through."""

from __future__ import annotations

import torch


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (half to even); identity gradient."""
    return (x.round() - x).detach() + x


def clamp_ste(
    x: torch.Tensor, low: float | torch.Tensor, high: float | torch.Tensor
) -> torch.Tensor:
    """Clamp whose gradient is 1 inside the range and 0 outside (the usual STE for clipping)."""
    return torch.clamp(x, low, high)
