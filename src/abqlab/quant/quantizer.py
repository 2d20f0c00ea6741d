"""Fake quantization in any registered number format: scales, zero points, groups, codes."""

from __future__ import annotations

import torch

from abqlab.quant.formats import get_format
from abqlab.quant.formats.integer import EPS
from abqlab.quant.formats.scale_rules import constrain
from abqlab.quant.spec import PER_CHANNEL, PER_TENSOR, QuantSpec

__all__ = ["EPS", "dequantize_codes", "fake_quant", "fake_quant_grouped", "from_groups",
           "qparams", "quantize_codes", "to_groups"]


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

    The spec's number format turns the range into a scale (integers: symmetric amax / divisor,
    asymmetric (max - min) / divisor; floats: amax / largest element; block formats their own
    rule), ``spec.scale_rule`` may constrain it (ZeroQuant-FP M1/M2), then the zero point follows
    (integers asymmetric: round(-min / scale), with an STE so learnable bounds get gradients).
    """
    lo = grouped.amin(dim=-1, keepdim=True) if xmin is None else xmin
    hi = grouped.amax(dim=-1, keepdim=True) if xmax is None else xmax
    fmt = get_format(spec.fmt)
    scale = constrain(fmt.scale(lo, hi, spec), spec.scale_rule)
    return scale, fmt.zero(lo, scale, spec)


def fake_quant_grouped(
    grouped: torch.Tensor, spec: QuantSpec, scale: torch.Tensor, zero: torch.Tensor
) -> torch.Tensor:
    """Quantize then dequantize with the given parameters (STE through the rounding)."""
    return get_format(spec.fmt).fake(grouped, scale, zero, spec)


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
    """Unsigned codes, scale and zero point of ``x`` per group.

    Integers: codes in [0, levels - 1] with x̂ = (code - zero) · scale (symmetric grids shifted
    by -qmin, so zero becomes -qmin). Float formats: the element's bit pattern, zero 0.
    ``grid`` gives a fixed (scale, zero) per group instead of the range.
    Returns codes [rows, cols] (uint8; int16 when levels > 256), scale and zero [rows, n_groups].
    """
    with torch.no_grad():
        grouped = to_groups(x.float(), spec.group, spec.partial_group)
        scale, zero = grid if grid is not None else qparams(grouped, spec, xmin, xmax)
        fmt = get_format(spec.fmt)
        codes = from_groups(fmt.encode(grouped, scale, zero, spec), x.shape)
        shift = spec.qmin if not fmt.is_float else 0
        return codes.reshape(-1, x.shape[-1]), scale.squeeze(-1), (zero - shift).squeeze(-1)


def dequantize_codes(
    codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int,
    fmt: str = "int",
) -> torch.Tensor:
    """Inverse of :func:`quantize_codes` for [rows, cols] codes with per-row group parameters."""
    rows, cols = codes.shape
    group_of_column = torch.arange(cols, device=codes.device) // group_size
    return get_format(fmt).dequantize(
        codes, scale[:, group_of_column], zero[:, group_of_column]
    )
