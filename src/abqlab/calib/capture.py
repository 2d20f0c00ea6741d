"""Capture the inputs of the first block (hidden states and the forward keyword arguments)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from abqlab.models.arch import ArchSpec, blocks_of


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once block 0's input is saved."""


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, arch: ArchSpec, windows: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Block-0 inputs for all windows [n, seqlen, hidden] (fp32) and the shared forward kwargs."""
    first = blocks_of(model, arch)[0]
    saved: list[torch.Tensor] = []
    kwargs: dict[str, Any] = {}

    def hook(module: nn.Module, args: tuple, kw: dict[str, Any]) -> None:
        hidden = args[0] if args else kw["hidden_states"]
        saved.append(hidden.detach().float())
        if not kwargs:
            kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise _Captured

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in windows.split(batch_size):
            with contextlib.suppress(_Captured):
                model(batch.to(device), use_cache=False)
    finally:
        handle.remove()
    kwargs["use_cache"] = False
    kwargs.pop("past_key_values", None)
    return torch.cat(saved), kwargs
