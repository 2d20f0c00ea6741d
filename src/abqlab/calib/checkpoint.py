"""Saving calibration: learned values per block as it finishes, the quantized model at the end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abqlab.quant.export import export_model
from abqlab.quant.fake_linear import FakeQuantLinear

FORMAT_VERSION = 1


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class CalibCheckpoint:
    """``<dir>/block_NNN.pt`` per calibrated block: each component's learned values."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add_block(self, index: int, components: dict[str, Any]) -> None:
        save_atomic(
            {"index": index, "components": components}, self.directory / f"block_{index:03d}.pt"
        )

    def load(self) -> dict[int, dict[str, Any]]:
        blocks = {}
        for path in sorted(self.directory.glob("block_*.pt")):
            state = torch.load(path, weights_only=True)
            blocks[state["index"]] = state["components"]
        return blocks


def float_tensors_outside_linears(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters not owned by a fake-quant linear (norms, embeddings were changed by smoothing)."""
    owned = {
        f"{name}.{p}"
        for name, m in model.named_modules()
        if isinstance(m, FakeQuantLinear)
        for p in ("weight", "bias")
    }
    return {
        name: tensor.detach().cpu().clone()
        for name, tensor in model.state_dict().items()
        if name not in owned and "norm" in name
    }


def save_quantized(model: nn.Module, path: Path, config: dict[str, Any]) -> None:
    """Integer codes + grids of every quantized linear, and the (smoothed) norm weights."""
    payload = {
        "format": FORMAT_VERSION,
        "config": config,
        "linears": export_model(model),
        "norms": float_tensors_outside_linears(model),
    }
    save_atomic(payload, path)


def load_quantized(model: nn.Module, arch: Any, path: Path) -> dict[str, Any]:
    """Rebuild a saved quantized model on top of the same float model; returns its config."""
    from abqlab.config import QuantConfig
    from abqlab.quant.apply import fake_quant_linears, quantize_model
    from abqlab.quant.quantizer import dequantize_codes

    payload = torch.load(path, weights_only=False)
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown quantized-model format {payload.get('format')}")
    quantize_model(model, arch, QuantConfig(**payload["config"]["quant"]))
    model.load_state_dict(payload["norms"], strict=False)
    for module in fake_quant_linears(model):
        saved = payload["linears"].get(module.name)
        if saved is None:
            continue
        weight = dequantize_codes(
            saved["qweight"], saved["scale"], saved["zero"], saved["group_size"]
        )
        module.weight.data.copy_(weight.to(module.weight))
        if saved["bias"] is not None:
            module.bias.data.copy_(saved["bias"].to(module.bias))
        device = module.weight.device
        signed_zero = saved["zero"] + module.w_spec.qmin  # exports shift codes by -qmin
        module.set_grid(
            saved["scale"].unsqueeze(-1).to(device), signed_zero.unsqueeze(-1).to(device)
        )
        module.freeze()
    return payload["config"]
