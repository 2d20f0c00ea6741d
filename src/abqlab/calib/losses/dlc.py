"""ABQ-LLM's double log-cosine loss: −log cos(d_q, d_fp) − log cos(d_q, d_fp*)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from abqlab.calib.losses.terms import LossInputs

MIN_COSINE = 1e-6


def log_cosine(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−log of the mean per-token cosine similarity (0 when aligned, grows with the angle)."""
    cosine = F.cosine_similarity(output.float(), target.float(), dim=-1).mean()
    return -torch.log(cosine.clamp(min=MIN_COSINE))


def double_log_cosine(inputs: LossInputs) -> torch.Tensor:
    """Direction error against both float targets."""
    return log_cosine(inputs.output, inputs.target_fp) + log_cosine(
        inputs.output, inputs.target_fpstar
    )
