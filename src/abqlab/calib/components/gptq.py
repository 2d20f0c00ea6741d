"""GPTQ (Frantar et al. 2022) for weights: quantize columns in order, spreading each column's
error over the remaining ones with the inverse Hessian of the layer's inputs (H = 2XᵀX/n).

Own implementation on the project's quantizer. Hessians come from the block's inputs on the
quantized stream, all linears of a block at once (not sub-layer sequential).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from abqlab.calib.components import Component, ComponentConfig
from abqlab.calib.context import BlockContext
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.quantizer import qparams
from abqlab.quant.spec import PER_TENSOR, QuantSpec


@dataclass
class GPTQConfig(ComponentConfig):
    damp: float = 0.01
    block_size: int = 128
    act_order: bool = False


def inverse_hessian_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of H⁻¹ after dampening the diagonal by ``damp`` · mean(diag)."""
    h = hessian.clone()
    h.diagonal().add_(damp * h.diagonal().mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True)


def column_grid(
    weight: torch.Tensor, spec: QuantSpec, start: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero [rows, 1] for the group beginning at column ``start``."""
    size = weight.shape[1] if spec.group == -1 else spec.group
    scale, zero = qparams(weight[:, start : start + size].unsqueeze(1), spec)
    return scale.squeeze(1), zero.squeeze(1)


@torch.no_grad()
def gptq_quantize(
    weight: torch.Tensor, hessian: torch.Tensor, spec: QuantSpec, cfg: GPTQConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantized (dequantized-float) weight and its grid (scale, zero as [rows, n_groups, 1])."""
    if spec.group == PER_TENSOR:
        raise ValueError("GPTQ supports per-channel or grouped weights, not per-tensor")
    if cfg.act_order and spec.group > 0:
        raise ValueError("GPTQ act_order is implemented for per-channel weights only")
    w = weight.detach().float().clone()
    h = hessian.float().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = torch.argsort(h.diagonal(), descending=True) if cfg.act_order else None
    if order is not None:
        w, h = w[:, order], h[order][:, order]
    hinv = inverse_hessian_factor(h, cfg.damp)
    cols = w.shape[1]
    scales, zeros = [], []
    quantized = torch.zeros_like(w)
    for start in range(0, cols, cfg.block_size):
        end = min(start + cfg.block_size, cols)
        block, errors = w[:, start:end].clone(), torch.zeros_like(w[:, start:end])
        for i in range(end - start):
            column = start + i
            if column == 0 or (spec.group > 0 and column % spec.group == 0):
                scale, zero = column_grid(torch.cat([block[:, i:], w[:, end:]], 1), spec, 0)
                scales.append(scale)
                zeros.append(zero)
            q = (
                torch.clamp(torch.round(block[:, i : i + 1] / scale) + zero, spec.qmin, spec.qmax)
                - zero
            ) * scale
            quantized[:, column] = q.squeeze(1)
            error = (block[:, i] - q.squeeze(1)) / hinv[column, column]
            block[:, i:] -= error[:, None] * hinv[column, start + i : end][None, :]
            errors[:, i] = error
        w[:, end:] -= errors @ hinv[start:end, end:]
    if order is not None:
        quantized = quantized[:, torch.argsort(order)]
    return quantized, torch.stack(scales, 1), torch.stack(zeros, 1)


class GPTQ(Component):
    config_class = GPTQConfig
    order = 90  # after every transform is baked

    def bake(self, ctx: BlockContext) -> None:
        linears = {p: m for p, m in ctx.linears().items() if m.w_spec is not None}
        for linear in linears.values():
            linear.bake()
        hessians = collect_hessians(ctx, linears)
        for path, linear in linears.items():
            weight, scale, zero = gptq_quantize(
                linear.weight, hessians[path], linear.w_spec, self.cfg
            )
            linear.weight.data.copy_(weight.to(linear.weight.dtype))
            linear.set_grid(scale.to(linear.weight), zero.to(linear.weight))


def collect_hessians(
    ctx: BlockContext, linears: dict[str, FakeQuantLinear]
) -> dict[str, torch.Tensor]:
    """H = 2/n Σ xxᵀ of each linear's input, from the block run on the quantized stream."""
    sums = {
        p: torch.zeros(m.in_features, m.in_features, device=m.weight.device)
        for p, m in linears.items()
    }
    counts = dict.fromkeys(linears, 0)

    def hook_for(path: str):
        def hook(module: FakeQuantLinear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
            x = inputs[0].detach().reshape(-1, module.in_features).float()
            sums[path] += 2.0 * x.T @ x
            counts[path] += x.shape[0]

        return hook

    handles = [m.register_forward_hook(hook_for(p)) for p, m in linears.items()]
    try:
        ctx.run_inputs()
    finally:
        for handle in handles:
            handle.remove()
    return {p: sums[p] / max(counts[p], 1) for p in linears}
