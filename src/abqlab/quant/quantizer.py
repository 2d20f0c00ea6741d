"""Integer fake quantization at any bits: scales, zero points, groups, codes."""

from __future__ import annotations

import torch

from abqlab.quant.spec import PER_CHANNEL, PER_TENSOR, QuantSpec
from abqlab.quant.ste import round_ste

EPS = 1e-8


def to_groups(x: torch.Tensor, group: int, partial: bool = False) -> torch.Tensor:
    """View ``x`` (rows × columns, last dim = inputs) as [rows, n_groups, group_size].

    With ``partial`` a row whose length g does not divide is padded by repeating its last
    column: the padding copies a member of the last group, so that group's min/max are exact.
    """
    if group == PER_TENSOR:
        return x.reshape(1, 1, -1)
    cols = x.shape[-1]
    size = cols if group == PER_CHANNEL else group
    rows = x.reshape(-1, cols)
    if cols % size:
        if not partial:
            raise ValueError(f"group size {size} does not divide {cols} input features")
        pad = size - cols % size
        rows = torch.cat([rows, rows[:, -1:].expand(-1, pad)], dim=1)
    return rows.reshape(rows.shape[0], -1, size)


def from_groups(grouped: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_groups`: drop any padding and restore ``shape``."""
    cols = shape[-1]
    rows = shape.numel() // cols if cols else 0
    return grouped.reshape(rows, -1)[:, :cols].reshape(shape)


def qparams(
    grouped: torch.Tensor,
    spec: QuantSpec,
    xmin: torch.Tensor | None = None,
    xmax: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per group (last dim reduced); ``xmin``/``xmax`` override the range.

    Symmetric: scale = amax / divisor, zero 0. Asymmetric: scale = (max - min) / divisor,
    zero = round(-min / scale) (rounded with an STE so learnable bounds get gradients).
    """
    lo = grouped.amin(dim=-1, keepdim=True) if xmin is None else xmin
    hi = grouped.amax(dim=-1, keepdim=True) if xmax is None else xmax
    if spec.sym:
        amax = torch.maximum(lo.abs(), hi.abs()).clamp(min=EPS)
        return amax / spec.scale_divisor, torch.zeros_like(amax)
    scale = (hi - lo).clamp(min=EPS) / spec.scale_divisor
    return scale, round_ste(-lo / scale)


def fake_quant_grouped(
    grouped: torch.Tensor, spec: QuantSpec, scale: torch.Tensor, zero: torch.Tensor
) -> torch.Tensor:
    """Quantize then dequantize with the given parameters (STE through the rounding)."""
    q = torch.clamp(round_ste(grouped / scale) + zero, spec.qmin, spec.qmax)
    return (q - zero) * scale


def fake_quant(
    x: torch.Tensor,
    spec: QuantSpec,
    xmin: torch.Tensor | None = None,
    xmax: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fake-quantize ``x`` along its last dimension according to ``spec``; same shape back."""
    grouped = to_groups(x, spec.group, spec.partial_group)
    scale, zero = qparams(grouped, spec, xmin, xmax)
    return from_groups(fake_quant_grouped(grouped, spec, scale, zero), x.shape)


def quantize_codes(
    x: torch.Tensor,
    spec: QuantSpec,
    xmin: torch.Tensor | None = None,
    xmax: torch.Tensor | None = None,
    grid: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unsigned integer codes, scale and zero point such that x̂ = (code - zero) · scale.

    Codes lie in [0, levels - 1]; symmetric grids are shifted by -qmin (zero becomes -qmin).
    ``grid`` gives a fixed (scale, zero) per group instead of the range.
    Returns codes [rows, cols] (uint8; int16 when levels > 256), scale and zero [rows, n_groups].
    """
    with torch.no_grad():
        grouped = to_groups(x.float(), spec.group, spec.partial_group)
        scale, zero = grid if grid is not None else qparams(grouped, spec, xmin, xmax)
        q = torch.clamp(torch.round(grouped / scale) + zero, spec.qmin, spec.qmax)
        dtype = torch.uint8 if spec.levels <= 256 else torch.int16  # 8-bit bit balance: 257
        codes = from_groups(q - spec.qmin, x.shape).to(dtype).reshape(-1, x.shape[-1])
        return codes, scale.squeeze(-1), (zero - spec.qmin).squeeze(-1)


def dequantize_codes(
    codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int
) -> torch.Tensor:
    """Inverse of :func:`quantize_codes` for [rows, cols] codes with per-row group parameters."""
    rows, cols = codes.shape
    group_of_column = torch.arange(cols, device=codes.device) // group_size
    return (codes.float() - zero[:, group_of_column]) * scale[:, group_of_column]
