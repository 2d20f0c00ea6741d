"""A packed save whose size is the accounted size: codes really at their bit width.

One safetensors file: per quantized linear its codes packed at ``storage_bits`` per code
(``<name>.codes``, uint8, ⌈rows·cols·bits / 8⌉ bytes), its grid as its format stores it
(``grids.py``: ``<name>.scale`` and, where stored, ``<name>.zero`` / ``<name>.tensor_scale``),
its bias; every other parameter (embeddings, norms, float linears) in float16, a tied tensor
once. Widths and shapes sit in the metadata, so the tensor bytes equal ``size/bytes`` up to the
rounding of each linear's codes to whole bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from abqlab.alloc.grids import decode_grid, encode_grid
from abqlab.quant.export import export_linear
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.quantizer import dequantize_codes

PACKED_FILE = "quantized.packed.safetensors"


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (< 2**bits) as a flat uint8 bit stream, ``bits`` bits each, big-endian per code."""
    flat = codes.reshape(-1).to(torch.int64).numpy()
    if flat.size and (flat.min() < 0 or flat.max() >= 2**bits):
        raise ValueError(f"codes outside 0..{2**bits - 1}")
    planes = (flat[:, None] >> np.arange(bits - 1, -1, -1)) & 1
    return torch.from_numpy(np.packbits(planes.astype(np.uint8).reshape(-1)))


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``count`` codes as int64."""
    planes = np.unpackbits(packed.numpy())[: count * bits].reshape(count, bits).astype(np.int64)
    return torch.from_numpy(planes @ (1 << np.arange(bits - 1, -1, -1)))


def linear_tensors(module: FakeQuantLinear) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The packed tensors of one quantized linear and its metadata entry."""
    if module.lorc_u is not None:
        raise ValueError(f"{module.name}: LoRC factors are not packed yet")
    saved = export_linear(module, strict=False)
    spec = module.w_spec
    if spec.group == 0:  # per tensor: one scale and zero, not one per row
        saved["scale"], saved["zero"] = saved["scale"][:1, :1], saved["zero"][:1, :1]
    grid, grid_meta = encode_grid(spec, saved["scale"], saved["zero"])
    tensors = {"codes": pack_codes(saved["qweight"], spec.storage_bits)}
    tensors.update({k: v.contiguous() for k, v in grid.items()})
    if saved["bias"] is not None:
        tensors["bias"] = saved["bias"].half()
    meta = {"bits": spec.storage_bits, "shape": list(saved["qweight"].shape),
            "group_size": saved["group_size"], "format": spec.fmt, **grid_meta}
    return tensors, meta


def save_packed(model: nn.Module, path: Path) -> dict[str, int]:
    """Write the packed model; returns its tensor bytes and file bytes."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    owned = set()
    for module in model.modules():
        if isinstance(module, FakeQuantLinear) and module.w_spec is not None:
            parts, layout[module.name] = linear_tensors(module)
            tensors.update({f"{module.name}.{k}": v for k, v in parts.items()})
            owned.update({id(module.weight), id(module.bias)})
    seen = set()
    for name, param in model.named_parameters():  # named_parameters lists a tied tensor once
        if id(param) in owned or param.numel() == 0 or id(param) in seen:
            continue
        seen.add(id(param))
        tensors[name] = param.detach().half().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"abqlab_linears": json.dumps(layout)})
    payload = sum(t.numel() * t.element_size() for t in tensors.values())
    return {"tensor_bytes": payload, "file_bytes": path.stat().st_size}


def load_packed_weights(path: Path) -> dict[str, torch.Tensor]:
    """The dequantized weight of every packed linear (float32), by module name."""
    weights = {}
    with safe_open(str(path), framework="pt") as handle:
        layout = json.loads(handle.metadata()["abqlab_linears"])
        for name, meta in layout.items():
            rows, cols = meta["shape"]
            codes = unpack_codes(handle.get_tensor(f"{name}.codes"), meta["bits"], rows * cols)
            scale, zero = decode_grid(
                meta, lambda part, name=name: handle.get_tensor(f"{name}.{part}"), rows
            )
            codes = codes.reshape(rows, cols)
            weights[name] = dequantize_codes(codes, scale, zero, meta["group_size"], meta["format"])
    return weights
