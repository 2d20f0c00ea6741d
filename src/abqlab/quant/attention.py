"""Quantized attention-matmul inputs (q, k, v after RoPE, i.e. the KV cache) and map recording.

Registered as a transformers attention implementation named ``abqlab``: each attention module
may carry ``abqlab_qkv`` (a dict of role → QuantSpec) and ``abqlab_record`` (a list that receives
the attention probabilities, used by the attention-KL calibration loss).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
from transformers.models.llama.modeling_llama import eager_attention_forward

from abqlab.quant.quantizer import fake_quant
from abqlab.quant.spec import QuantSpec

IMPLEMENTATION = "abqlab"


def quantize_heads(
    x: torch.Tensor, spec: QuantSpec | None, per_head: bool = False
) -> torch.Tensor:
    """Fake-quantize [batch, heads, seq, head_dim] per token and head (over head_dim), or with
    ``per_head`` one grid per head over the whole window (seq × head_dim)."""
    if spec is None:
        return x
    if per_head:
        return fake_quant(x.flatten(2), spec).view_as(x)
    return fake_quant(x, spec)


def abqlab_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quantize q/k/v as configured, then run eager (when recording maps) or SDPA attention."""
    rotation = getattr(module, "abqlab_qk_rotation", None)
    if rotation is not None:  # online rotation of q and k per head (abqlab.rotation): q·kᵀ kept
        query, key = rotation(query), rotation(key)
    specs: dict[str, QuantSpec] = getattr(module, "abqlab_qkv", None) or {}
    per_head = bool(getattr(module, "abqlab_kv_per_head", False))
    query = quantize_heads(query, specs.get("q"))
    key = quantize_heads(key, specs.get("k"), per_head)
    value = quantize_heads(value, specs.get("v"), per_head)
    record = getattr(module, "abqlab_record", None)
    if record is not None:
        out, probs = eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
        record.append(probs)
        return out, probs
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_attention() -> str:
    """Register the implementation once; returns its name for ``set_attn_implementation``."""
    if IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(IMPLEMENTATION, abqlab_attention)
        # a materialized causal mask: the eager path (map recording) cannot infer causality
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)
    return IMPLEMENTATION
