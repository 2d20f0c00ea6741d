"""ZeroQuant-FP's scale constraints (Wu, Yao, He 2023, "ZeroQuant-FP: A Leap Forward in LLMs
Post-Training W4A8 Quantization Using Floating-Point Formats", arXiv:2307.09782, §"Casting FP4 to
FP8"): with W4A8 the FP4 weights are cast to FP8 before the FP8 matmul; when every group scale
is a power of two (or a power of two times one real scale per row) the cast is an exponent shift.

* **M1** — map each scale to a power of two: Ŝ = 2^⌈log₂ S⌉.
* **M2** — keep one real scale per row, S_max = max_g S_g (the row's largest group scale), and
  make each group's ratio to it a power of two: Ŝ_g = S_max · 2^⌈log₂(S_g / S_max)⌉.

Both round up (⌈·⌉), so Ŝ ≥ S and no element is clipped; the cost is a coarser grid for the
group (Ŝ < 2S). Provenance: the definitions are written from the paper as recalled and from
issue 13's summary ("M1: group scales rounded to powers of two; M2: a real per-row scale times
power-of-two per-group ratios"); the paper's text could not be fetched here, so check the
rounding direction against it before quoting these as its exact equations.
Scales are [rows, n_groups, 1]; the forward value is exact (frexp, no log rounding) and the
gradient is the unconstrained scale's (for learnable clipping).
"""

from __future__ import annotations

import torch

from abqlab.quant.formats.base import SCALE_RULES, ceil_log2, pow2, with_surrogate_grad


def m1(scale: torch.Tensor) -> torch.Tensor:
    """Ŝ = 2^⌈log₂ S⌉ per group."""
    exact = pow2(ceil_log2(scale.detach()), scale)
    return with_surrogate_grad(exact, scale)


def m2(scale: torch.Tensor) -> torch.Tensor:
    """Ŝ_g = S_max · 2^⌈log₂(S_g / S_max)⌉ with S_max the row's (dim 0) largest group scale."""
    row = scale.detach().amax(dim=-2, keepdim=True)
    ratio = scale.detach() / row
    exact = row * pow2(ceil_log2(ratio), scale)
    return with_surrogate_grad(exact, scale)


def constrain(scale: torch.Tensor, rule: str) -> torch.Tensor:
    """Apply the scale rule ``none`` | ``m1`` | ``m2``."""
    if rule == "none":
        return scale
    if rule == "m1":
        return m1(scale)
    if rule == "m2":
        return m2(scale)
    raise ValueError(f"scale_rule={rule}: allowed: {', '.join(SCALE_RULES)}")
