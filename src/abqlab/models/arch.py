"""Architectures as data: where the blocks are, which linears they hold, what smoothing balances."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from abqlab.registry import Registry


@dataclass(frozen=True)
class SmoothPair:
    """A per-channel scale s divides ``producer``'s output and multiplies ``consumers``' inputs.

    ``producer`` is a norm (its weight absorbs 1/s) or a linear (its output rows absorb 1/s).
    ``kv_groups`` marks the v→o pair, where one v channel feeds several query heads (GQA).
    """

    name: str
    producer: str
    consumers: tuple[str, ...]
    kv_groups: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """Where things live in a decoder-only model, relative to the model or to one block."""

    name: str
    model_types: tuple[str, ...]
    blocks: str = "model.layers"
    embed: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    rotary: str = "model.rotary_emb"
    lm_head: str = "lm_head"
    attention: str = "self_attn"
    linears: tuple[str, ...] = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
    smooth_pairs: tuple[SmoothPair, ...] = field(default_factory=tuple)
    down_proj: str = "mlp.down_proj"
    # residual-stream rotation (abqlab.rotation): each RMSNorm and the linears reading its output,
    # the linears writing into the residual stream, the value and output projections of attention
    norm_readers: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    )
    residual_writers: tuple[str, ...] = ("self_attn.o_proj", "mlp.down_proj")
    v_proj: str = "self_attn.v_proj"
    o_proj: str = "self_attn.o_proj"


LLAMA_PAIRS = (
    SmoothPair(
        "qkv", "input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    ),
    SmoothPair("vo", "self_attn.v_proj", ("self_attn.o_proj",), kv_groups=True),
    SmoothPair("gate_up", "post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    SmoothPair("up_down", "mlp.up_proj", ("mlp.down_proj",)),
)

ARCHITECTURES: Registry[ArchSpec] = Registry("architecture")
ARCHITECTURES.register(
    "llama", ArchSpec("llama", ("llama", "mistral", "qwen2", "qwen3"), smooth_pairs=LLAMA_PAIRS)
)


def arch_for(model_type: str) -> ArchSpec:
    """The spec whose ``model_types`` include ``model_type``."""
    for name in ARCHITECTURES:
        spec = ARCHITECTURES.get(name)
        if model_type in spec.model_types:
            return spec
    known = sorted(t for n in ARCHITECTURES for t in ARCHITECTURES.get(n).model_types)
    raise ValueError(f"unsupported model_type '{model_type}'; supported: {', '.join(known)}")


def get_module(root: nn.Module, path: str) -> nn.Module:
    """``root.a.b.c`` for path ``"a.b.c"``."""
    return root.get_submodule(path)


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at ``path``."""
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, module)


def blocks_of(model: nn.Module, arch: ArchSpec) -> nn.ModuleList:
    """The decoder blocks, in order."""
    return get_module(model, arch.blocks)  # type: ignore[return-value]
