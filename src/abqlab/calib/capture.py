"""Capture inputs: the first block's (hidden states and forward keyword arguments), and the rows
each linear of a block reads during a pass."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
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


def input_rows(x: torch.Tensor, in_features: int, skip_first_tokens: int = 0) -> torch.Tensor:
    """A linear's input as fp32 rows [tokens, in_features], the first ``skip_first_tokens`` of
    each window dropped."""
    if skip_first_tokens and x.dim() == 3:
        x = x[:, skip_first_tokens:]
    return x.detach().reshape(-1, in_features).float()


def record_inputs(
    modules: dict[str, nn.Module], run: Callable[[], Any], skip_first_tokens: int = 0
) -> dict[str, list[torch.Tensor]]:
    """The input rows of each module during ``run()`` (no grad), one tensor per forward call."""
    seen: dict[str, list[torch.Tensor]] = {p: [] for p in modules}

    def hook_for(path: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: Any) -> None:
            seen[path].append(input_rows(inputs[0], module.in_features, skip_first_tokens))

        return hook

    handles = [m.register_forward_hook(hook_for(p)) for p, m in modules.items()]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return seen
