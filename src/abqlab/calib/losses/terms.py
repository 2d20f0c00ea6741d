"""What a loss sees for one mini-batch of one block."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossInputs:
    """Quantized block output, both float targets, and attention maps when recorded.

    ``target_fp`` = float block on the float stream; ``target_fpstar`` = float block on the
    quantized stream (DESIGN.md "Calibration"). Attention maps are [batch, heads, q, k].
    """

    output: torch.Tensor
    target_fp: torch.Tensor
    target_fpstar: torch.Tensor
    attn_q: list[torch.Tensor] | None = None
    attn_fp: list[torch.Tensor] | None = None
