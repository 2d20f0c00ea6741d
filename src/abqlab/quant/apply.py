"""Turn a float model into a fake-quantized one as a ``QuantConfig`` says."""

from __future__ import annotations

import fnmatch

from torch import nn

from abqlab.config import QuantConfig
from abqlab.models.arch import ArchSpec, blocks_of, get_module, set_module
from abqlab.quant.attention import register_attention
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.formats import format_at, get_format
from abqlab.quant.spec import FP_BITS, PER_CHANNEL, QuantSpec


def weight_spec(cfg: QuantConfig, name: str = "") -> QuantSpec | None:
    """The weight quantizer of linear ``name`` (``cfg.layer_bits`` overrides ``w_bits``), or None
    when weights stay in float."""
    bits = (getattr(cfg, "layer_bits", None) or {}).get(name, cfg.w_bits)
    if bits == FP_BITS:
        return None
    fmt = format_at(cfg.w_format, bits)  # float formats: the family member of that width
    sym = cfg.w_sym or get_format(fmt).is_float
    return QuantSpec(bits, sym, cfg.w_group, cfg.w_bit_balance, cfg.w_partial_group,
                     fmt=fmt, scale_rule=cfg.w_scale_rule)


def act_bits(cfg: QuantConfig, name: str = "") -> int:
    """Input bits of linear ``name``: the first ``cfg.layer_a_bits`` pattern it matches, else
    ``a_bits``."""
    for pattern, bits in (getattr(cfg, "layer_a_bits", None) or {}).items():
        if fnmatch.fnmatch(name, pattern):
            return int(bits)
    return cfg.a_bits


def act_spec(cfg: QuantConfig, name: str = "") -> QuantSpec | None:
    """The dynamic activation quantizer of linear ``name`` (per token by default), or None."""
    bits = act_bits(cfg, name)
    if bits == FP_BITS:
        return None
    fmt = cfg.a_format if bits == cfg.a_bits else format_at(cfg.a_format, bits)
    sym = cfg.a_sym or get_format(fmt).is_float
    return QuantSpec(bits, sym, cfg.a_group, fmt=fmt, activation=True)


def qkv_specs(cfg: QuantConfig) -> dict[str, QuantSpec]:
    """Quantizers for the attention-matmul inputs (per token and head, or per head)."""
    bits = {"q": cfg.q_bits, "k": cfg.k_bits, "v": cfg.v_bits}
    sym = cfg.kv_sym or get_format(cfg.kv_format).is_float
    return {
        role: QuantSpec(b, sym, PER_CHANNEL, fmt=cfg.kv_format, activation=True)
        for role, b in bits.items()
        if b != FP_BITS
    }


def is_quantized(cfg: QuantConfig) -> bool:
    return any(b != FP_BITS for b in (cfg.w_bits, cfg.a_bits, cfg.q_bits, cfg.k_bits, cfg.v_bits))


def quantize_block(block: nn.Module, arch: ArchSpec, cfg: QuantConfig, prefix: str) -> None:
    """Replace the block's linears with ``FakeQuantLinear`` and set q/k/v quantizers."""
    for path in arch.linears:
        full_name = f"{prefix}.{path}"
        if any(fnmatch.fnmatch(full_name, pattern) for pattern in cfg.skip):
            continue
        linear = get_module(block, path)
        if isinstance(linear, FakeQuantLinear):
            continue
        module = FakeQuantLinear(linear, weight_spec(cfg, full_name), act_spec(cfg, full_name),
                                 full_name)
        module.a_clip = cfg.a_clip
        set_module(block, path, module)
    specs = qkv_specs(cfg)
    if specs:
        attention = get_module(block, arch.attention)
        attention.abqlab_qkv = specs
        attention.abqlab_kv_per_head = cfg.kv_granularity == "head"


def use_abqlab_attention(model: nn.Module) -> None:
    """Route attention through the implementation that can quantize q/k/v and record maps."""
    model.set_attn_implementation(register_attention())


def quantize_model(model: nn.Module, arch: ArchSpec, cfg: QuantConfig) -> nn.Module:
    """Fake-quantize every block in place (embeddings and lm_head stay in float)."""
    use_abqlab_attention(model)
    for index, block in enumerate(blocks_of(model, arch)):
        quantize_block(block, arch, cfg, f"{arch.blocks}.{index}")
    return model


def fake_quant_linears(model: nn.Module) -> list[FakeQuantLinear]:
    """All fake-quant linears, in module order."""
    return [m for m in model.modules() if isinstance(m, FakeQuantLinear)]


def freeze_model(model: nn.Module) -> None:
    """Cache every quantized weight for fast evaluation."""
    for module in fake_quant_linears(model):
        module.freeze()
