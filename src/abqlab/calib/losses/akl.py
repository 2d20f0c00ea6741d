"""Attention-map KL: KL(attn_q‖attn_fp) + KL(attn_fp‖attn_q) of head-averaged probabilities."""

from __future__ import annotations

import torch

from abqlab.calib.losses.terms import LossInputs

EPS = 1e-8


def symmetric_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) over the last dim, averaged over the rest; ≥ 0, 0 iff p = q."""
    p, q = p.float().clamp(min=EPS), q.float().clamp(min=EPS)
    log_ratio = p.log() - q.log()
    return ((p - q) * log_ratio).sum(dim=-1).mean()


def attention_kl(inputs: LossInputs) -> torch.Tensor:
    """Symmetric KL between quantized and float attention maps, heads averaged (as ABQ-LLM)."""
    if not inputs.attn_q or not inputs.attn_fp:
        raise ValueError("attention KL needs recorded attention maps")
    terms = [
        symmetric_kl(q.mean(dim=1), fp.mean(dim=1))
        for q, fp in zip(inputs.attn_q, inputs.attn_fp, strict=True)
    ]
    return torch.stack(terms).mean()
