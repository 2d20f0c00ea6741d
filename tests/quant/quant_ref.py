"""Plain-torch reference quantization, written from the definitions (not from abqlab's code)."""

from __future__ import annotations

import torch


def levels(bits: int, bit_balance: bool = False) -> int:
    return 2**bits + (1 if bit_balance else 0)


def chunks(x: torch.Tensor, group: int) -> list[torch.Tensor]:
    """The quantization groups of ``x`` (last dim = inputs): 0 tensor, -1 row, g>0 columns."""
    if group == 0:
        return [x.reshape(1, -1)]
    rows = x.reshape(-1, x.shape[-1])
    if group == -1:
        return [rows]
    return list(torch.split(rows, group, dim=1))


def ref_scale(chunk: torch.Tensor, bits: int, sym: bool, bit_balance: bool = False) -> torch.Tensor:
    """Scale per row of ``chunk`` ([rows, n] → [rows, 1]) from min/max."""
    lo = chunk.amin(dim=1, keepdim=True)
    hi = chunk.amax(dim=1, keepdim=True)
    if sym:
        top = 2 ** (bits - 1) if bit_balance else 2 ** (bits - 1) - 1
        return torch.maximum(lo.abs(), hi.abs()) / top
    return (hi - lo) / (levels(bits, bit_balance) - 1)


def ref_fake_quant_rows(
    rows: torch.Tensor, bits: int, sym: bool, bit_balance: bool = False
) -> torch.Tensor:
    """Min/max round-to-nearest fake quantization of each row of a 2-D tensor."""
    scale = ref_scale(rows, bits, sym, bit_balance)
    if sym:
        top = 2 ** (bits - 1) if bit_balance else 2 ** (bits - 1) - 1
        low = -(2 ** (bits - 1))
        return torch.clamp(torch.round(rows / scale), low, top) * scale
    zero = torch.round(-rows.amin(dim=1, keepdim=True) / scale)
    q = torch.clamp(torch.round(rows / scale) + zero, 0, levels(bits, bit_balance) - 1)
    return (q - zero) * scale
