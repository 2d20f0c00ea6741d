"""GPTQ's column solver (Frantar et al. 2022) on abqlab's integer grids.

Columns are quantized one at a time; each column's error is spread over the not yet quantized
columns with the upper Cholesky factor of the inverse Hessian (H = 2XᵀX/n of the layer's inputs),
lazily in blocks of ``block_size`` columns. Options:

* ``act_order``: process columns by decreasing Hessian diagonal (largest input energy first).
* ``groups``: where a group's grid comes from. ``static``: every grid from the original weights,
  groups on the original column order (what llm-compressor calls static act-order).
  ``dynamic``: a group's grid from the error-updated weights when its first column is reached;
  with ``act_order`` groups are formed in processing order and each column's group is returned
  as ``g_idx`` (the GPTQ/AutoGPTQ ``desc_act`` layout).
* ``grid``: ``minmax`` ranges, or ``mse``: per row and group, shrink the range by the factor in
  (1 − ``mse_max_shrink``, 1] that minimises Σ|Q(w) − w|^``mse_norm`` (GPTQ's ``mse`` option).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from abqlab.calib.components import ComponentConfig
from abqlab.quant.quantizer import fake_quant_grouped, qparams, to_groups
from abqlab.quant.spec import PER_CHANNEL, PER_TENSOR, QuantSpec

GROUPS = ("static", "dynamic")
GRIDS = ("minmax", "mse")
HESSIANS = ("float", "quantized", "sequential")
ACT_AWARE_TARGETS = ("stream", "block", "float")
ACT_AWARE_GAPS = ("full", "diagonal")


@dataclass
class GPTQConfig(ComponentConfig):
    """GPTQ settings; defaults as in conf/calib/gptq.yaml, chosen on SmolLM2
    (experiments/peers/README.md): act-order, static groups, float Hessians, MSE grid."""

    damp: float = 0.01
    block_size: int = 128
    act_order: bool = True
    groups: str = "static"
    grid: str = "mse"
    mse_steps: int = 100
    mse_max_shrink: float = 0.8
    mse_norm: float = 2.4
    hessian: str = "float"
    skip_first_tokens: int = 0
    act_aware: bool = False  # fit the weights to the quantized activations (gptq_act_aware)
    act_aware_damp: float = 1.0  # λ of the act-aware correction × mean diag H̃ (SmolLM2: 1.0)
    act_aware_target: str = "stream"  # whose unquantized input the outputs should match
    act_aware_gap: str = "full"  # C − H̃ in full, or its diagonal only (gptq_act_aware)

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("groups", self.groups, GROUPS),
            ("grid", self.grid, GRIDS),
            ("hessian", self.hessian, HESSIANS),
            ("act_aware_target", self.act_aware_target, ACT_AWARE_TARGETS),
            ("act_aware_gap", self.act_aware_gap, ACT_AWARE_GAPS),
        ):
            if value not in allowed:
                raise ValueError(f"gptq.{key}={value}: allowed: {', '.join(allowed)}")
        if self.act_aware_target == "block" and self.hessian == "float":
            raise ValueError("gptq.act_aware_target=block needs gptq.hessian=sequential or "
                             "quantized (with float Hessians it is the stream target)")
        if not self.damp > 0 or not self.act_aware_damp > 0:
            raise ValueError(f"gptq.damp={self.damp}, gptq.act_aware_damp={self.act_aware_damp}:"
                             " allowed: > 0")
        if self.block_size < 1 or self.mse_steps < 1 or self.skip_first_tokens < 0:
            raise ValueError("gptq.block_size and gptq.mse_steps must be >= 1, "
                             "gptq.skip_first_tokens >= 0")
        if not 0 <= self.mse_max_shrink < 1:
            raise ValueError(f"gptq.mse_max_shrink={self.mse_max_shrink}: allowed: [0, 1)")


@dataclass
class GPTQResult:
    """Quantized weight (dequantized floats), grid [rows, n_groups, 1], optional column groups."""

    weight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    g_idx: torch.Tensor | None = None


def inverse_hessian_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of H⁻¹ after dampening the diagonal by ``damp`` · mean(diag)."""
    h = hessian.clone()
    h.diagonal().add_(damp * h.diagonal().mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True)


def grouped_grid(
    grouped: torch.Tensor, spec: QuantSpec, cfg: GPTQConfig, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero [rows, n_groups, 1] of ``grouped`` [rows, n_groups, size].

    ``valid`` [n_groups, size] masks padding columns out of the MSE criterion.
    """
    if cfg.grid == "minmax":
        return qparams(grouped, spec)
    lo = grouped.amin(-1, keepdim=True)
    hi = grouped.amax(-1, keepdim=True)
    best_scale, best_zero = qparams(grouped, spec)
    best_err = torch.full_like(lo, float("inf"))
    for step in range(int(cfg.mse_max_shrink * cfg.mse_steps) + 1):
        shrink = 1.0 - step / cfg.mse_steps
        scale, zero = qparams(grouped, spec, lo * shrink, hi * shrink)
        err = (fake_quant_grouped(grouped, spec, scale, zero) - grouped).abs().pow(cfg.mse_norm)
        if valid is not None:
            err = err * valid
        err = err.sum(-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


def static_grid(
    weight: torch.Tensor, spec: QuantSpec, cfg: GPTQConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid of every group from ``weight`` as it is, [rows, n_groups] (partial last group ok)."""
    cols = weight.shape[1]
    grouped = to_groups(weight, spec.group, partial=True)
    size = grouped.shape[-1]
    valid = (torch.arange(grouped.shape[1] * size, device=weight.device) < cols).view(-1, size)
    scale, zero = grouped_grid(grouped, spec, cfg, valid.to(weight.dtype))
    return scale.squeeze(-1), zero.squeeze(-1)


def round_to_grid(
    column: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec
) -> torch.Tensor:
    """Nearest grid value of each entry (per-entry scale and zero)."""
    if spec.fmt != "int":  # float formats round through their own element grid
        return fake_quant_grouped(column, spec, scale, zero)
    return (torch.clamp(torch.round(column / scale) + zero, spec.qmin, spec.qmax) - zero) * scale


@torch.no_grad()
def gptq_quantize(
    weight: torch.Tensor, hessian: torch.Tensor, spec: QuantSpec, cfg: GPTQConfig
) -> GPTQResult:
    """GPTQ on one weight [rows, cols] with its input Hessian [cols, cols] (fp32; fp64 kept)."""
    if spec.group == PER_TENSOR:
        raise ValueError("GPTQ supports per-channel or grouped weights, not per-tensor")
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to(dtype).clone()
    h = hessian.detach().to(dtype).clone()
    rows, cols = w.shape
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    size = cols if spec.group == PER_CHANNEL else spec.group
    n_groups = -(-cols // size)
    if cfg.act_order:
        perm = torch.argsort(h.diagonal(), descending=True, stable=True)
    else:
        perm = torch.arange(cols, device=w.device)
    dynamic = cfg.groups == "dynamic" and spec.group > 0
    if dynamic:
        group_of = torch.arange(cols, device=w.device) // size  # by processing position
        scale = torch.ones(rows, n_groups, device=w.device, dtype=dtype)
        zero = torch.zeros(rows, n_groups, device=w.device, dtype=dtype)
    else:
        scale, zero = static_grid(w, spec, cfg)
        group_of = perm // size  # each processed column keeps its original group
    w, h = w[:, perm], h[perm][:, perm]
    hinv = inverse_hessian_factor(h, cfg.damp)
    quantized = torch.zeros_like(w)
    for start in range(0, cols, cfg.block_size):
        end = min(start + cfg.block_size, cols)
        block, errors = w[:, start:end].clone(), torch.zeros_like(w[:, start:end])
        for i in range(end - start):
            column = start + i
            group = int(group_of[column])
            if dynamic and column % size == 0:
                current = torch.cat([block[:, i:], w[:, end:]], 1)[:, :size]
                s, z = grouped_grid(current.unsqueeze(1), spec, cfg)
                scale[:, group], zero[:, group] = s[:, 0, 0], z[:, 0, 0]
            q = round_to_grid(block[:, i], scale[:, group], zero[:, group], spec)
            quantized[:, column] = q
            error = (block[:, i] - q) / hinv[column, column]
            block[:, i:] -= error[:, None] * hinv[column, start + i : end][None, :]
            errors[:, i] = error
        w[:, end:] -= errors @ hinv[start:end, end:]
    inverse = torch.argsort(perm)
    g_idx = group_of[inverse].to(torch.int32) if dynamic and cfg.act_order else None
    return GPTQResult(quantized[:, inverse], scale.unsqueeze(-1), zero.unsqueeze(-1), g_idx)
