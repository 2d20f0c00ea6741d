"""Rotation (QuaRot / SpinQuant-style incoherence processing) as a calibration component.

Model level (``prepare_rotation``, called by the rtn and blockwise methods before anything is
captured or quantized): the offline rotation of ``abqlab.rotation.transform`` — residual stream
(norms folded, head untied), value/output heads, online rotations before down_proj (and
optionally o_proj, q/k). The float model's function is unchanged; every other component then
works on the rotated model. Model level too (``learn: [residual]``): SpinQuant's R1, a learned
rotation of the residual stream on top of the Hadamard, trained end to end on the quantized
model's logits (``abqlab.rotation.residual``) and folded into the float weights before any block
is calibrated. Block level (``learn: [heads]``): a learned rotation of each value head on top
(Cayley, identity at start), trained by the block trainer with the configured losses and baked
into v_proj / o_proj — SpinQuant's R2, learned block-wise instead of end to end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abqlab.calib.components import COMPONENTS, Component, ComponentConfig, build_component
from abqlab.calib.context import BlockContext
from abqlab.rotation.cayley import CayleyRotation
from abqlab.rotation.residual import ResidualTraining
from abqlab.rotation.transform import KINDS, RotationPlan, head_layout, rotate_model

log = logging.getLogger(__name__)

LEARNABLE = ("heads", "residual")
RESIDUAL_FILE = "residual_rotation.pt"  # the learned R1 of a run, reused when it resumes
PLAN_FIELDS = ("kind", "seed", "residual", "heads", "online_down", "online_o", "online_qk")


@dataclass
class RotationConfig(ComponentConfig):
    """See ``RotationPlan`` for the offline part; ``learn`` lists rotations trained per block."""

    lr: float = 1e-3  # AdamW on the Cayley parameter of learned rotations
    kind: str = "hadamard"  # hadamard (randomised; random orthogonal if none known) | random
    seed: int = 0
    residual: bool = True  # R1: the residual stream (norms folded, lm_head untied)
    heads: bool = True  # R2: each value head (v_proj rows / o_proj columns), offline
    online_down: bool = True  # R4: online Hadamard before down_proj (weights absorb it)
    online_o: bool = False  # online rotation across heads before o_proj
    online_qk: bool = False  # R3: online Hadamard of q and k per head (for a quantized K cache)
    learn: list[str] = field(default_factory=list)  # heads: R2 per block; residual: R1 end to end
    residual_steps: int = 100  # learn: [residual] — AdamW steps, one window each
    residual_lr: float = 1e-3
    residual_loss: str = "kl"  # kl (to the float model's logits) | ce (next tokens, SpinQuant)
    residual_windows: int = 16  # calibration windows: half to train on, half to pick the best R
    residual_batch: int = 1  # windows per step
    residual_weights: bool = True  # quantize weights in the loop (false: activations/KV only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rotation.kind={self.kind}: allowed: {', '.join(KINDS)}")
        bad = [name for name in self.learn if name not in LEARNABLE]
        if bad:
            raise ValueError(f"rotation.learn={bad}: allowed: {', '.join(LEARNABLE)}")
        if "residual" in self.learn and not self.residual:
            raise ValueError("rotation.learn=[residual] needs rotation.residual=true")
        if "residual" in self.learn:
            self.residual_training()  # raises on bad steps / lr / loss
            if self.residual_windows < 2:
                raise ValueError(f"rotation.residual_windows={self.residual_windows}: at least 2 "
                                 "(half trains the rotation, half picks the best one)")

    def residual_training(self) -> ResidualTraining:
        return ResidualTraining(self.residual_steps, self.residual_lr, self.residual_loss,
                                batch=self.residual_batch, weights=self.residual_weights)

    def plan(self) -> RotationPlan:
        return RotationPlan(**{name: getattr(self, name) for name in PLAN_FIELDS})


def rotate_rows_per_head(rotation: CayleyRotation, groups: int) -> Any:
    """v_proj: each head's rows W_h ↦ Rᵀ W_h (and bias b_h ↦ b_h R)."""

    def transform(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        r = rotation().to(weight.dtype)
        rows = weight.view(groups, r.shape[0], -1)
        new_bias = None if bias is None else (bias.view(groups, -1) @ r).reshape(-1)
        return (r.T @ rows).reshape(weight.shape), new_bias

    return transform


def rotate_columns_per_head(rotation: CayleyRotation, heads: int) -> Any:
    """o_proj: each head's columns W_h ↦ W_h R."""

    def transform(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        r = rotation().to(weight.dtype)
        return (weight.view(weight.shape[0], heads, -1) @ r).reshape(weight.shape), bias

    return transform


class Rotation(Component):
    config_class = RotationConfig
    order = 5  # before smoothing: its v→o scales act on the rotated heads

    def __init__(self, cfg: RotationConfig) -> None:
        super().__init__(cfg)
        self.learned: CayleyRotation | None = None

    def prepare(self, model: nn.Module, arch: Any) -> dict[str, Any]:
        """The offline, function-preserving rotation of the whole float model."""
        return rotate_model(model, arch, self.cfg.plan())

    def attach(self, ctx: BlockContext) -> list[nn.Parameter]:
        self.learned = None
        if "heads" not in self.cfg.learn:
            return []
        v_proj, o_proj = ctx.linear(ctx.arch.v_proj), ctx.linear(ctx.arch.o_proj)
        heads, kv_heads, head_dim = head_layout(ctx.model_config)
        self.learned = CayleyRotation(head_dim, v_proj.weight.device)
        v_proj.weight_transforms.append(rotate_rows_per_head(self.learned, kv_heads))
        o_proj.weight_transforms.append(rotate_columns_per_head(self.learned, heads))
        return [self.learned.theta]

    def state(self) -> dict[str, Any]:
        """The learned head rotation of the last block (none when nothing is learned)."""
        if self.learned is None:
            return {}
        return {"heads": self.learned().detach().cpu().clone()}


def rotation_settings(calib: Any) -> RotationConfig | None:
    """The enabled rotation component's config in ``calib.components``, or None."""
    settings = (calib.components or {}).get("rotation")
    if settings is None:
        return None
    component = build_component("rotation", dict(settings))
    return component.cfg if component.cfg.enabled else None


def prepare_rotation(loaded: Any, calib: Any, quant: Any = None, data: Any = None,
                     run_dir: Path | None = None) -> dict[str, Any]:
    """Rotate the loaded float model if ``calib.components.rotation`` is enabled; a summary for
    the run record under ``rotation`` (empty when there is nothing to do). ``learn: [residual]``
    also trains R1 on the quantized model (``quant``, windows of ``data``) and folds it in; the
    learned matrix is kept in ``run_dir`` and reused when the run resumes."""
    cfg = rotation_settings(calib)
    if cfg is None:
        return {}
    summary = Rotation(cfg).prepare(loaded.model, loaded.arch)
    if "residual" in cfg.learn:
        if quant is None or data is None:
            raise ValueError("rotation.learn=[residual] needs the run's quant config and data")
        summary["learned_residual"] = learned_residual(loaded, cfg, calib, quant, data, run_dir)
    return {"rotation": summary}


def learned_residual(loaded: Any, cfg: RotationConfig, calib: Any, quant: Any, data: Any,
                     run_dir: Path | None) -> dict[str, Any]:
    """Train (or reload from ``run_dir``) the residual rotation and fold it into the model."""
    import torch

    from abqlab.data.sources import calibration_windows
    from abqlab.rotation.residual import absorb_residual, learn_residual_rotation

    path = None if run_dir is None else Path(run_dir) / RESIDUAL_FILE
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=False)
        log.info("residual rotation: reusing %s", path)
        absorb_residual(loaded.model, loaded.arch, saved["matrix"])
        return {**saved["summary"], "reused": str(path)}
    windows = calibration_windows(loaded.tokenizer, data, cfg.residual_windows, calib.seqlen,
                                  calib.seed, loaded.add_bos)
    matrix, summary = learn_residual_rotation(loaded.model, loaded.arch, quant, windows,
                                              cfg.residual_training(), calib.seed)
    absorb_residual(loaded.model, loaded.arch, matrix)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"matrix": matrix.cpu(), "summary": summary}, path)
    return summary


def smoothing_conflict(components: dict[str, Any]) -> tuple[str, Any, str] | None:
    """(key, value, allowed) when a scale-folding component would break an online rotation:
    a per-channel scale between up_proj and down_proj (or v_proj and o_proj) does not commute
    with the rotation applied online between them."""
    if "rotation" not in components:
        return None
    settings = dict(components.get("rotation") or {})
    if not settings.get("enabled", True):
        return None
    cfg = RotationConfig(**settings)
    blocked = {"up_down": cfg.online_down, "vo": cfg.online_o}
    for name in ("smoothing", "awq"):
        other = dict(components.get(name) or {})
        if name not in components or not other.get("enabled", True):
            continue
        pairs = other.get("pairs") or COMPONENTS.get(name).config_class().pairs
        bad = [p for p in pairs if blocked.get(p)]
        if bad:
            keep = [p for p in pairs if p not in bad]
            return (f"calib.components.{name}.pairs", list(pairs),
                    f"pairs without {', '.join(bad)} while the rotation puts an online rotation "
                    f"between them (e.g. ++calib.components.{name}.pairs=[{','.join(keep)}])")
    return None


def training_conflict(method: str, epochs: int, components: dict[str, Any]
                      ) -> tuple[str, Any, str] | None:
    """(key, value, allowed) when the rotation cannot do what its settings ask: a learned
    rotation with nothing to train it, or any rotation on a saved model being loaded."""
    settings = dict(components.get("rotation") or {})
    if "rotation" not in components or not settings.get("enabled", True):
        return None
    if method == "load":
        return ("calib.components.rotation", settings,
                "no rotation with calib=load: the saved model carries the rotation it was "
                "quantized with")
    learn = list(settings.get("learn") or [])
    if "heads" in learn and (method != "blockwise" or epochs < 1):
        return ("calib.components.rotation.learn", learn,
                f"no heads with calib.method={method} and calib.epochs={epochs}: the learned "
                "head rotation needs the block trainer (calib.method=blockwise, calib.epochs "
                ">= 1); learn=[residual] trains end to end with any method")
    return None
