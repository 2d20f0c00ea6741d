"""Saving calibration: learned values per block as it finishes, the quantized model at the end."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
        "linears": export_model(model, strict=False),  # online rotations: "rotation" below
        "norms": float_tensors_outside_linears(model),
        "rotation": getattr(model, "abqlab_rotation", None),  # the seeded plan, re-applied
        "learned_residual": getattr(model, "abqlab_learned_residual", None),  # R1 on top of it
    }
    save_atomic(payload, path)


def load_quantized(model: nn.Module, arch: Any, path: Path) -> dict[str, Any]:
    """Rebuild a saved quantized model on top of the same float model; returns its config."""
    from abqlab.config import QuantConfig
    from abqlab.quant.apply import fake_quant_linears, quantize_model
    from abqlab.quant.lorc import load_factors
    from abqlab.quant.quantizer import dequantize_codes

    payload = torch.load(path, weights_only=False)
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown quantized-model format {payload.get('format')}")
    if payload.get("rotation"):  # the offline rotation is seeded: re-derive it on the float model
        from abqlab.rotation.transform import RotationPlan, rotate_model

        rotate_model(model, arch, RotationPlan(**payload["rotation"]))
    if payload.get("learned_residual") is not None:  # embeddings and head need it (linears: saved)
        from abqlab.rotation.residual import absorb_residual

        absorb_residual(model, arch, payload["learned_residual"])
    quantize_model(model, arch, QuantConfig(**payload["config"]["quant"]))
    model.load_state_dict(payload["norms"], strict=False)
    for module in fake_quant_linears(model):
        saved = payload["linears"].get(module.name)
        if saved is None:
            continue
        fmt = saved.get("w_format", "int")
        weight = dequantize_codes(
            saved["qweight"], saved["scale"], saved["zero"], saved["group_size"], fmt
        )
        module.weight.data.copy_(weight.to(module.weight))
        if saved["bias"] is not None:
            module.bias.data.copy_(saved["bias"].to(module.bias))
        device = module.weight.device
        shift = module.w_spec.qmin if fmt == "int" else 0
        signed_zero = saved["zero"] + shift  # int exports shift codes by -qmin
        module.set_grid(
            saved["scale"].unsqueeze(-1).to(device), signed_zero.unsqueeze(-1).to(device)
        )
        load_factors(module, saved.get("lorc"))
        module.a_clip = saved.get("a_clip", module.a_clip)  # per linear (components.act_clip)
        module.freeze()
    return payload["config"]


RESUME_DIR = "resume"


def fingerprint(*parts: Any) -> str:
    """A short digest of what a calibration depends on (configs as dicts, the model config)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResumeState:
    """``<dir>/resume/block_NNN.pt`` per finished block: its weights and grids after baking, its
    summary entry and the global RNG state after it, so that a calibration that died continues
    with the next block and ends exactly as an uninterrupted one would. Files whose
    ``fingerprint`` differs (another config or model) are ignored."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = directory / RESUME_DIR
        self.key = key

    def path(self, index: int) -> Path:
        return self.directory / f"block_{index:03d}.pt"

    def save(self, index: int, block: nn.Module, summary: dict[str, Any]) -> None:
        state = {k: v.detach().cpu().clone() for k, v in block.state_dict().items()}
        payload = {
            "fingerprint": self.key,
            "index": index,
            "state": state,
            "summary": summary,
            "rng": torch.get_rng_state(),
        }
        save_atomic(payload, self.path(index))

    def load(self, index: int) -> dict[str, Any] | None:
        path = self.path(index)
        if not path.is_file():
            return None
        payload = torch.load(path, weights_only=False)
        return payload if payload.get("fingerprint") == self.key else None

    def finished(self) -> int:
        """How many leading blocks (0, 1, ...) have a valid saved state."""
        count = 0
        while self.path(count).is_file() and self.load(count) is not None:
            count += 1
        return count


def restore_block(block: nn.Module, payload: dict[str, Any]) -> None:
    """Put a finished block's saved weights and grids into the freshly quantized ``block``."""
    state = payload["state"]
    for path, module in block.named_modules():
        device = next(module.parameters(), torch.empty(0)).device
        for name in [n for n, b in module._buffers.items() if b is None]:  # registered as None
            key = f"{path}.{name}" if path else name
            if key in state:  # set at calibration (grids, g_idx, ...): None in a fresh block
                setattr(module, name, state[key].to(device))
    block.load_state_dict(state, strict=True)
    for module in block.modules():
        if isinstance(module, FakeQuantLinear):
            module.freeze()
    torch.set_rng_state(payload["rng"])


def clear_resume_state(directory: Path) -> None:
    """Drop the resume files (large: whole blocks) once the run is recorded ok."""
    shutil.rmtree(directory / RESUME_DIR, ignore_errors=True)
