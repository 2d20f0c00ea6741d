"""The offline rotation of a decoder-only model; its float function is unchanged.

Row-vector convention (y = x Wᵀ + b). With an orthogonal Q on the residual stream (x ↦ x Q):
embeddings E ↦ E Q; linears reading the residual (after an RMSNorm whose scale was folded into
them, and the head) W ↦ W Q; linears writing into it W ↦ Qᵀ W, b ↦ b Q. RMSNorm without a scale
commutes with Q (‖x Q‖ = ‖x‖), so every block sees a rotated copy of the same computation.

Per block, optionally: a rotation R of each value head (v_proj rows per kv head ↦ Rᵀ W, o_proj
columns per head ↦ W R; attention mixes tokens, not channels, so this is exact under GQA), and
online rotations M (``OnlineRotation``) of the down_proj input, of the o_proj input across heads,
and of q and k per head after RoPE ((q M)(k M)ᵀ = q kᵀ; helps a quantized K cache).
An online M is applied by a forward pre-hook, so every observer of the linear's input (GPTQ
Hessians, statistics) sees x M; the weight absorbs it (W ↦ W M).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from abqlab.models.arch import ArchSpec, blocks_of, get_module
from abqlab.quant.fake_linear import set_input_transform
from abqlab.rotation.online import OnlineRotation, across_heads, orthonormal_hadamard

KINDS = ("hadamard", "random")


@dataclass(frozen=True)
class RotationPlan:
    """What to rotate. ``kind``: randomised Hadamard (random orthogonal where no Hadamard of
    the size is known here) or random orthogonal; ``seed`` draws every sign and matrix."""

    kind: str = "hadamard"
    seed: int = 0
    residual: bool = True
    heads: bool = True
    online_down: bool = True
    online_o: bool = False
    online_qk: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rotation kind={self.kind}: allowed: {', '.join(KINDS)}")


def head_layout(config: Any) -> tuple[int, int, int]:
    """(query heads, kv heads, head dim) of a transformers config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, kv_heads, head_dim


COMPUTE = torch.float32  # products in fp32 (fp64 costs 2-4x for a ~1e-7 relative difference)


@torch.no_grad()
def set_weight(module: nn.Module, weight: torch.Tensor, name: str = "weight") -> None:
    param = getattr(module, name)
    param.data.copy_(weight.to(param.dtype))


def wide(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, COMPUTE))


@torch.no_grad()
def absorb_input(linear: nn.Module, q: torch.Tensor) -> None:
    """The linear reads x Q instead of x: W ↦ W Q."""
    w = wide(linear.weight)
    set_weight(linear, w @ q.to(w.dtype))


@torch.no_grad()
def absorb_output(linear: nn.Module, q: torch.Tensor) -> None:
    """The linear must write y Q instead of y: W ↦ Qᵀ W, b ↦ b Q."""
    w = wide(linear.weight)
    set_weight(linear, q.T.to(w.dtype) @ w)
    if getattr(linear, "bias", None) is not None:
        set_weight(linear, wide(linear.bias) @ q.to(w.dtype), "bias")


def untie_head(model: nn.Module, arch: ArchSpec) -> bool:
    """Give lm_head its own weight if it shares the embedding's; returns whether it did."""
    head, embed = get_module(model, arch.lm_head), get_module(model, arch.embed)
    if head.weight is not embed.weight and head.weight.data_ptr() != embed.weight.data_ptr():
        return False
    head.weight = nn.Parameter(embed.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False
    if hasattr(model, "all_tied_weights_keys"):
        model.all_tied_weights_keys = {}
    return True


@torch.no_grad()
def fold_norm(norm: nn.Module, readers: list[nn.Module]) -> None:
    """x / rms(x) · γ then W  ==  x / rms(x) then W diag(γ); γ becomes 1."""
    if getattr(norm, "bias", None) is not None:
        raise ValueError(f"{type(norm).__name__} has a bias: only RMSNorm-style norms fold")
    for linear in readers:
        w = wide(linear.weight)
        set_weight(linear, w * norm.weight.to(w.dtype)[None, :])
    norm.weight.data.fill_(1.0)


def fold_norms(model: nn.Module, arch: ArchSpec) -> None:
    """Every block's norms into the linears reading them; the final norm into the head."""
    for block in blocks_of(model, arch):
        for norm, readers in arch.norm_readers:
            fold_norm(get_module(block, norm), [get_module(block, r) for r in readers])
    fold_norm(get_module(model, arch.final_norm), [get_module(model, arch.lm_head)])


def rotate_residual(model: nn.Module, arch: ArchSpec, q: torch.Tensor) -> None:
    """Embeddings, every block's readers and writers, and the head (norms already folded)."""
    embed = get_module(model, arch.embed)
    absorb_input(embed, q)  # rows are token vectors: E ↦ E Q
    for block in blocks_of(model, arch):
        for _, readers in arch.norm_readers:
            for path in readers:
                absorb_input(get_module(block, path), q)
        for path in arch.residual_writers:
            absorb_output(get_module(block, path), q)
    absorb_input(get_module(model, arch.lm_head), q)


@torch.no_grad()
def rotate_value_heads(
    v_proj: nn.Module, o_proj: nn.Module, r: torch.Tensor, kv_heads: int, heads: int
) -> None:
    """Each value head v ↦ v R (v_proj rows ↦ Rᵀ W per kv head); o_proj columns ↦ W R per head."""
    head_dim = r.shape[0]
    wv = wide(v_proj.weight)
    r = r.to(wv.dtype)
    set_weight(v_proj, (r.T @ wv.view(kv_heads, head_dim, -1)).reshape(kv_heads * head_dim, -1))
    if getattr(v_proj, "bias", None) is not None:
        bias = wide(v_proj.bias).view(kv_heads, head_dim) @ r
        set_weight(v_proj, bias.reshape(-1), "bias")
    wo = wide(o_proj.weight)
    set_weight(o_proj, (wo.view(wo.shape[0], heads, head_dim) @ r).reshape(wo.shape[0], -1))


def add_online(linear: nn.Module, rotation: OnlineRotation) -> None:
    """Rotate the linear's input at run time and absorb the rotation into its weight."""
    absorb_input(linear, rotation.matrix().to(linear.weight.device))
    set_input_transform(linear, rotation.to(linear.weight.device))


def _describe(rotation: OnlineRotation) -> str:
    return rotation.extra_repr()


def rotate_model(model: nn.Module, arch: ArchSpec, plan: RotationPlan) -> dict[str, Any]:
    """Apply ``plan`` in place (deterministic in ``plan.seed``); returns a summary.

    The model remembers the plan (``model.abqlab_rotation``) so a saved quantized model can be
    rebuilt on a fresh float model (calib/checkpoint.py).
    """
    if getattr(model, "abqlab_rotation", None) is not None:
        raise ValueError("the model is already rotated")
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(plan.seed)
    config = model.config
    heads, kv_heads, head_dim = head_layout(config)
    device = get_module(model, arch.embed).weight.device
    summary: dict[str, Any] = {"plan": asdict(plan)}
    if plan.residual:
        summary["untied_head"] = untie_head(model, arch)
        fold_norms(model, arch)
        q = orthonormal_hadamard(config.hidden_size, generator, plan.kind)
        rotate_residual(model, arch, q.matrix().to(device))
        summary["residual"] = _describe(q)
    for block in blocks_of(model, arch):
        v_proj, o_proj = get_module(block, arch.v_proj), get_module(block, arch.o_proj)
        if plan.heads:
            r = orthonormal_hadamard(head_dim, generator, plan.kind)
            rotate_value_heads(v_proj, o_proj, r.matrix().to(device), kv_heads, heads)
            summary["heads"] = _describe(r)
        if plan.online_down:
            down = orthonormal_hadamard(config.intermediate_size, generator, plan.kind)
            add_online(get_module(block, arch.down_proj), down)
            summary["online_down"] = _describe(down)
        if plan.online_o:
            mix = across_heads(heads, head_dim, generator, plan.kind)
            add_online(o_proj, mix)
            summary["online_o"] = _describe(mix)
        if plan.online_qk:
            qk = orthonormal_hadamard(head_dim, generator, plan.kind)
            get_module(block, arch.attention).abqlab_qk_rotation = qk.to(device)
            summary["online_qk"] = _describe(qk)
    model.abqlab_rotation = asdict(plan)
    summary["seconds"] = time.perf_counter() - start
    return summary
