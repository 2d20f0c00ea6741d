"""Perplexity with the usual protocol: non-overlapping windows of ``seqlen`` tokens."""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm


def eval_windows(stream: torch.Tensor, seqlen: int, bos_id: int | None) -> torch.Tensor:
    """Non-overlapping windows [n, seqlen]; with ``bos_id`` each is BOS + ``seqlen - 1`` tokens."""
    body = seqlen - 1 if bos_id is not None else seqlen
    count = stream.numel() // body
    if count == 0:
        raise ValueError(f"text has {stream.numel()} tokens, fewer than one window of {seqlen}")
    windows = stream[: count * body].reshape(count, body)
    if bos_id is not None:
        windows = torch.cat([torch.full((count, 1), bos_id, dtype=torch.long), windows], dim=1)
    return windows


@torch.no_grad()
def window_nll(model: nn.Module, windows: torch.Tensor, batch_size: int) -> tuple[float, int]:
    """Summed negative log-likelihood and token count over ``windows``.

    Every token after the first of a window is scored; with BOS, the BOS is never a target.
    """
    device = next(model.parameters()).device
    total, count = 0.0, 0
    batches = windows.split(batch_size)
    for batch in tqdm(batches, desc="perplexity", unit="batch", leave=False):
        batch = batch.to(device)
        logits = model(batch).logits[:, :-1].float()
        targets = batch[:, 1:]
        nll = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        )
        total += nll.double().sum().item()  # float64 sum: no drift over many tokens
        count += targets.numel()
    return total, count


def perplexity(
    model: nn.Module,
    stream: torch.Tensor,
    seqlen: int,
    max_windows: int | None = None,
    bos_id: int | None = None,
    batch_size: int = 4,
) -> float:
    """exp(mean token NLL) over the first ``max_windows`` windows of ``stream``."""
    windows = eval_windows(stream, seqlen, bos_id)
    if max_windows:
        windows = windows[:max_windows]
    total, count = window_nll(model, windows, batch_size)
    return math.exp(total / count)
