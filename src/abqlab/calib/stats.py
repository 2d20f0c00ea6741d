"""Activation statistics of a float block: per-input-channel absolute maxima of its linears."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from abqlab.models.arch import get_module


@torch.no_grad()
def input_absmax(
    block: nn.Module,
    paths: tuple[str, ...],
    x: torch.Tensor,
    kwargs: dict[str, Any],
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """max |input| per channel of each linear at ``paths``, over all of ``x``."""
    maxima: dict[str, torch.Tensor] = {}

    def hook_for(path: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            current = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0).float()
            maxima[path] = torch.maximum(maxima[path], current) if path in maxima else current

        return hook

    handles = [get_module(block, p).register_forward_hook(hook_for(p)) for p in paths]
    try:
        for batch in x.split(batch_size):
            block(batch, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return maxima
