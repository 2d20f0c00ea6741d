"""GPTQ that sees the activation quantizer: the weights are fitted to the quantized inputs.

Plain GPTQ minimises ‖X(Ŵ − W)ᵀ‖² on the layer's unquantized inputs X, although at inference the
layer reads X̃ = Q_a(X) (per-token activation quantization, clipped by ``a_clip``). The output
error that matters is ‖X̃Ŵᵀ − XWᵀ‖². With H̃ = 2X̃ᵀX̃/n and C = 2X̃ᵀX/n it equals
‖X̃(Ŵ − V)ᵀ‖² + const for the least-squares target

    V = W Cᵀ H̃⁻¹ = W + W (C − H̃)ᵀ H̃⁻¹,

so GPTQ run on V with Hessian H̃ minimises it. ``act_aware_target``: ``stream`` takes X as the
layer's unquantized input on the quantized stream (only the layer's own activation error is
compensated); ``block`` takes it from the block run in float on the same quantized-stream input
(with ``hessian=sequential`` the weights then also compensate the quantization of the block's
earlier sub-layers, e.g. down_proj that of gate/up); ``float`` takes it from the float model on
the float stream, so the weights also compensate the error accumulated upstream (the objective of
GPTAQ's asymmetric calibration, Li et al., ICML 2025; solved here by this target and plain GPTQ,
not by GPTAQ's column update).
The correction W(C − H̃)ᵀ(H̃ + λI)⁻¹ is damped (λ = ``act_aware_damp`` · mean diag H̃),
so V = W exactly when the activations are not quantized; with few calibration tokens per input
feature the correction fits the sample's own rounding noise, and a larger λ shrinks it.
``act_aware_gap=diagonal`` keeps only the diagonal of C − H̃ (≈ −E[e²] per input channel when
the rounding error e is uncorrelated across channels): in_features numbers to estimate instead
of in_features², so far less to overfit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from abqlab.calib.capture import input_rows, record_inputs
from abqlab.calib.context import BlockContext
from abqlab.models.arch import get_module
from abqlab.quant.fake_linear import FakeQuantLinear

Moments = dict[str, tuple[torch.Tensor, torch.Tensor]]


@contextlib.contextmanager
def moment_hooks(
    linears: dict[str, FakeQuantLinear],
    skip_first_tokens: int = 0,
    references: dict[str, list[torch.Tensor]] | None = None,
) -> Iterator[Moments]:
    """Inside the ``with``: every forward through ``linears`` adds to H̃ = 2/n Σ x̃x̃ᵀ and
    C = 2/n Σ x̃rᵀ of its input x (x̃ its quantized copy; r = x, or the next tensor of
    ``references[path]``, batch by batch); the yielded dict holds (H̃, C) per linear once the
    ``with`` ends."""
    sums = {
        p: [torch.zeros(m.in_features, m.in_features, device=m.weight.device) for _ in range(2)]
        for p, m in linears.items()
    }
    counts = dict.fromkeys(linears, 0)

    def hook_for(path: str) -> Any:
        def hook(module: FakeQuantLinear, inputs: tuple[torch.Tensor, ...], _out: Any) -> None:
            x = input_rows(inputs[0], module.in_features, skip_first_tokens)
            xq = module.quantized_input(x).float()
            reference = x if references is None else references[path].pop(0)
            if reference.shape != x.shape:
                raise RuntimeError(f"{path}: float input {tuple(reference.shape)} does not "
                                   f"match the quantized stream's {tuple(x.shape)}")
            sums[path][0] += 2.0 * xq.T @ xq
            sums[path][1] += 2.0 * xq.T @ reference
            counts[path] += x.shape[0]

        return hook

    moments: Moments = {}
    handles = [m.register_forward_hook(hook_for(p)) for p, m in linears.items()]
    try:
        yield moments
    finally:
        for handle in handles:
            handle.remove()
    for path in linears:
        n = max(counts[path], 1)
        moments[path] = (sums[path][0] / n, sums[path][1] / n)


def float_inputs(
    ctx: BlockContext, paths: list[str], skip_first_tokens: int = 0
) -> dict[str, list[torch.Tensor]]:
    """The float block's input rows to each linear on the float stream, one tensor per batch."""
    if ctx.float_block is None or ctx.run_float_inputs is None:
        raise RuntimeError("act_aware_target=float needs the float stream (the calibrator sets "
                           "BlockContext.float_block when a component needs_float_inputs)")
    modules = {p: get_module(ctx.float_block, p) for p in paths}
    return record_inputs(modules, ctx.run_float_inputs, skip_first_tokens)


def collect_moments(
    ctx: BlockContext,
    linears: dict[str, FakeQuantLinear],
    skip_first_tokens: int = 0,
    target: str = "stream",
    references: dict[str, list[torch.Tensor]] | None = None,
) -> Moments:
    """(H̃, C) of each linear's input over the calibration windows, from one pass of the block
    (after one pass of its float copy when ``target`` is ``float``; ``references``: the
    recorded unquantized inputs for the ``block`` target, consumed)."""
    if target == "float":
        references = float_inputs(ctx, list(linears), skip_first_tokens)
    elif target == "block":
        if references is None:
            raise RuntimeError("act_aware_target=block needs the block's float inputs "
                               "recorded before quantizing (GPTQ.block_references)")
        references = {p: references.pop(p) for p in linears}
    else:
        references = None
    with moment_hooks(linears, skip_first_tokens, references) as moments:
        ctx.run_inputs()
    return moments


@torch.no_grad()
def compensated_target(
    weight: torch.Tensor,
    hessian_q: torch.Tensor,
    cross: torch.Tensor,
    damp: float,
    gap: str = "full",
) -> torch.Tensor:
    """V = W + W(C − H̃)ᵀ(H̃ + λI)⁻¹: the float weight that best maps quantized inputs onto the
    float outputs (fp32, or fp64 when the weight is); ``gap="diagonal"``: C − H̃ by its
    diagonal."""
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to(dtype)
    h = hessian_q.to(dtype)
    difference = (cross.to(dtype) - h).T  # (C − H̃)ᵀ
    h = h.clone()
    h.diagonal().add_(damp * h.diagonal().mean().clamp_min(1e-12))
    if gap == "diagonal":
        difference = torch.diag(difference.diagonal())
    correction = torch.linalg.solve(h, (w @ difference).T).T  # W(C − H̃)ᵀ H⁻¹ (H symmetric)
    return w + correction
