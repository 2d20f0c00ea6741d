"""Export quantized linears as integer codes + scales + zero points (what kernels consume)."""

from __future__ import annotations

from typing import Any

import torch

from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.lorc import export_factors
from abqlab.quant.quantizer import quantize_codes
from abqlab.quant.spec import FP_BITS
from abqlab.rotation.online import OnlineRotation


def export_input_rotation(module: FakeQuantLinear, strict: bool = True) -> dict[str, Any] | None:
    """The online input rotation as ``OnlineRotation.fields()`` (``{"signs", "factor", "inner",
    "inner_hadamard"}``, tensors cloned; ``OnlineRotation.from_fields`` rebuilds it), None without
    one. ``strict``: refuse any other
    kind of input transform (the kernel path only knows ``OnlineRotation``); else it is dropped."""
    transform = getattr(module, "input_transform", None)
    if transform is None:
        return None
    if not isinstance(transform, OnlineRotation):
        if strict:
            raise ValueError(f"{module.name}: its input transform {type(transform).__name__} is "
                             "not an OnlineRotation, which is all the kernel path applies; "
                             "export refused")
        return None
    return transform.fields()


def export_linear(module: FakeQuantLinear, strict: bool = True) -> dict[str, Any]:
    """Codes (uint8, [out, in]), scale and zero ([out, n_groups]) with W = (code - zero) · scale.

    Call after calibration is baked: any remaining transforms or clipping are applied first.
    ``w_format`` names the number format: for a float format the codes are the element's bit
    patterns and W = value(code) · scale (zero 0; integer kernels must refuse it). ``lorc``:
    the LoRC factors (quant/lorc.py), or None. ``a_clip``: the per-token activation range ratio;
    ``input_rotation``: the online rotation applied to the input before its quantizer
    (:func:`export_input_rotation`), or None.
    """
    if module.w_spec is None:
        raise ValueError(f"{module.name}: weights are not quantized; nothing to export")
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
        "input_rotation": export_input_rotation(module, strict),
    }


def export_model(model: torch.nn.Module, strict: bool = True) -> dict[str, dict[str, Any]]:
    """Every quantized linear's export, keyed by its module name. ``strict``: refuse layers
    whose input transform the kernel path cannot apply (anything but an ``OnlineRotation``)."""
    return {
        module.name: export_linear(module, strict)
        for module in model.modules()
        if isinstance(module, FakeQuantLinear) and module.w_spec is not None
    }
