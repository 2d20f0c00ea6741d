"""Quantized attention inputs (q/k/v) and attention-map recording on a tiny random llama."""

from __future__ import annotations

import pytest
import torch
from quant_ref import ref_fake_quant_rows
from transformers import LlamaConfig, LlamaForCausalLM

from abqlab.config import QuantConfig
from abqlab.models.arch import arch_for, blocks_of
from abqlab.quant.apply import quantize_model
from abqlab.quant.attention import quantize_heads
from abqlab.quant.spec import QuantSpec

HEADS, KV_HEADS, SEQ = 4, 2, 12


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, 256, (2, SEQ), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def float_logits(ids: torch.Tensor) -> torch.Tensor:
    return tiny_llama()(ids).logits


def quantized(**bits: int) -> LlamaForCausalLM:
    model = tiny_llama()
    return quantize_model(model, arch_for("llama"), QuantConfig(**bits))


def test_quantize_heads_is_per_token_and_head() -> None:
    x = torch.randn(2, HEADS, SEQ, 16)
    spec = QuantSpec(3, False, -1)
    expected = ref_fake_quant_rows(x.reshape(-1, 16), 3, False).reshape(x.shape)
    assert torch.allclose(quantize_heads(x, spec), expected, atol=1e-6)
    assert quantize_heads(x, None) is x


def test_abqlab_attention_without_quantization_matches_sdpa(
    ids: torch.Tensor, float_logits: torch.Tensor
) -> None:
    model = quantized()
    assert model.config._attn_implementation == "abqlab"
    assert torch.allclose(model(ids).logits, float_logits, atol=1e-5)


@pytest.mark.parametrize("role", ["q", "k", "v"])
def test_each_quantized_input_changes_the_output(
    role: str, ids: torch.Tensor, float_logits: torch.Tensor
) -> None:
    errors = {}
    for bits in (8, 2):
        model = quantized(**{f"{role}_bits": bits})
        attn = blocks_of(model, arch_for("llama"))[0].self_attn
        assert set(attn.abqlab_qkv) == {role}
        errors[bits] = (model(ids).logits - float_logits).abs().max().item()
    assert errors[2] > 1e-3
    assert 0 < errors[8] < errors[2]


def record_maps(model: LlamaForCausalLM, ids: torch.Tensor) -> tuple[list, torch.Tensor]:
    attns = [block.self_attn for block in blocks_of(model, arch_for("llama"))]
    for attn in attns:
        attn.abqlab_record = []
    logits = model(ids).logits
    maps = [attn.abqlab_record for attn in attns]
    for attn in attns:
        del attn.abqlab_record
    return maps, logits


@pytest.mark.parametrize("bits", [{}, {"q_bits": 4, "k_bits": 4, "v_bits": 4}], ids=["fp", "qkv4"])
def test_recorded_maps_are_causal_probabilities(
    bits: dict[str, int], ids: torch.Tensor
) -> None:
    model = quantized(**bits)
    plain = model(ids).logits
    maps, logits = record_maps(model, ids)
    assert torch.allclose(logits, plain, atol=1e-5)  # eager (recording) path = SDPA path
    assert len(maps) == 2 and all(len(m) == 1 for m in maps)
    for (probs,) in maps:
        assert probs.shape == (2, HEADS, SEQ, SEQ)
        assert torch.all(probs >= 0)
        assert torch.allclose(probs.sum(-1), torch.ones(2, HEADS, SEQ), atol=1e-5)
        future = torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), diagonal=1)
        assert torch.all(probs[..., future] == 0)
        assert torch.allclose(probs[..., 0, 0], torch.ones(2, HEADS))  # first token: itself


def test_quantized_queries_change_the_recorded_maps(ids: torch.Tensor) -> None:
    fp_maps, _ = record_maps(quantized(), ids)
    q_maps, _ = record_maps(quantized(q_bits=2, k_bits=2), ids)
    assert (fp_maps[0][0] - q_maps[0][0]).abs().max() > 1e-3
