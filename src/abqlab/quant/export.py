"""Export quantized linears as integer codes + scales + zero points (what kernels consume)."""

from __future__ import annotations

from typing import Any

import torch

from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.lorc import export_factors
from abqlab.quant.quantizer import quantize_codes
from abqlab.quant.spec import FP_BITS


def export_linear(module: FakeQuantLinear, strict: bool = True) -> dict[str, Any]:
    """Codes (uint8, [out, in]), scale and zero ([out, n_groups]) with W = (code - zero) · scale.

    Call after calibration is baked: any remaining transforms or clipping are applied first.
    ``w_format`` names the number format: for a float format the codes are the element's bit
    patterns and W = value(code) · scale (zero 0; integer kernels must refuse it). ``lorc``:
    the LoRC factors (quant/lorc.py), or None.
    """
    if module.w_spec is None:
        raise ValueError(f"{module.name}: weights are not quantized; nothing to export")
    if strict and getattr(module, "input_transform", None) is not None:
        raise ValueError(f"{module.name}: its input is rotated online (abqlab.rotation), which "
                         "the kernels do not do; export refused")
    if strict and module.a_clip < 1.0:
        raise ValueError(f"{module.name}: activation clip ratio {module.a_clip} < 1, which the "
                         "kernels do not apply; export refused")
    if module.w_g_idx is not None:
        raise ValueError(f"{module.name}: act-order g_idx groups cannot be exported (use gptq "
                         "groups=static, the same grids in column order)")
    weight, bias = module.transformed()
    spec = module.w_spec
    grid = module.weight_qparams(module.grouped(weight))
    codes, scale, zero = quantize_codes(weight, spec, grid=grid)
    group_size = weight.shape[1] if spec.group <= 0 else spec.group
    if spec.group == 0:  # per tensor: one scale for every row
        scale, zero = scale.expand(weight.shape[0], 1), zero.expand(weight.shape[0], 1)
    a_spec = module.a_spec
    return {
        "qweight": codes,
        "scale": scale.reshape(weight.shape[0], -1).float().contiguous(),
        "zero": zero.reshape(weight.shape[0], -1).float().contiguous(),
        "group_size": group_size,
        "w_bits": spec.bits,
        "w_levels": spec.levels,
        "a_bits": FP_BITS if a_spec is None else a_spec.bits,
        "a_sym": bool(a_spec.sym) if a_spec is not None else False,
        "a_clip": float(module.a_clip),
        "bias": None if bias is None else bias.detach().float().clone(),
        "w_format": spec.fmt,
        "lorc": export_factors(module),
    }


def export_model(model: torch.nn.Module, strict: bool = True) -> dict[str, dict[str, Any]]:
    """Every quantized linear's export, keyed by its module name. ``strict``: refuse layers the
    kernels cannot run as exported (an online input rotation, an activation clip ratio)."""
    return {
        module.name: export_linear(module, strict)
        for module in model.modules()
        if isinstance(module, FakeQuantLinear) and module.w_spec is not None
    }
