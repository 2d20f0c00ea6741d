"""Loading tiny random llama/mistral/qwen2 and the 2-layer SmolLM2; arch specs; quantize_model."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from abqlab.config import ModelConfig, QuantConfig
from abqlab.models.arch import ARCHITECTURES, arch_for, blocks_of, get_module, set_module
from abqlab.models.load import LoadedModel, load_config, load_model, resolve_add_bos
from abqlab.pipeline import typed
from abqlab.quant.apply import fake_quant_linears, quantize_model
from abqlab.quant.fake_linear import FakeQuantLinear

TINY = ["tiny-llama", "tiny-mistral", "tiny-qwen2"]
HIDDEN, INTER, HEADS, KV_HEADS = 64, 128, 4, 2


def expected_shapes(head_dim: int) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of each linear in a block of the tiny configs."""
    return {
        "self_attn.q_proj": (HEADS * head_dim, HIDDEN),
        "self_attn.k_proj": (KV_HEADS * head_dim, HIDDEN),
        "self_attn.v_proj": (KV_HEADS * head_dim, HIDDEN),
        "self_attn.o_proj": (HIDDEN, HEADS * head_dim),
        "mlp.gate_proj": (INTER, HIDDEN),
        "mlp.up_proj": (INTER, HIDDEN),
        "mlp.down_proj": (HIDDEN, INTER),
    }


@pytest.fixture(scope="module", params=TINY)
def tiny(request: pytest.FixtureRequest) -> tuple[str, ModelConfig]:
    from abq_helpers import compose_run

    cfg: DictConfig = compose_run([f"model={request.param}"])
    model_cfg = typed(cfg.model, ModelConfig)
    model_cfg.device = "cpu"
    return request.param, model_cfg


def test_tiny_config_loads_and_has_every_linear(tiny: tuple[str, ModelConfig]) -> None:
    name, model_cfg = tiny
    assert model_cfg.source == "random"
    loaded = load_model(model_cfg, seed=0)
    model_type = name.removeprefix("tiny-")
    assert loaded.model.config.model_type == model_type
    assert loaded.arch is arch_for(model_type) is ARCHITECTURES.get("llama")
    blocks = blocks_of(loaded.model, loaded.arch)
    assert len(blocks) == 2
    shapes = expected_shapes(HIDDEN // HEADS)
    for block in blocks:
        for path in loaded.arch.linears:
            linear = get_module(block, path)
            assert type(linear) is nn.Linear, path
            assert (linear.out_features, linear.in_features) == shapes[path]
        for pair in loaded.arch.smooth_pairs:
            get_module(block, pair.producer)
            for consumer in pair.consumers:
                assert consumer in loaded.arch.linears
        get_module(block, loaded.arch.attention)
    for path in (loaded.arch.embed, loaded.arch.final_norm, loaded.arch.lm_head):
        get_module(loaded.model, path)
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training


def test_random_load_is_seeded() -> None:
    from abq_helpers import compose_run

    model_cfg = typed(compose_run(["model=tiny-llama"]).model, ModelConfig)
    model_cfg.device = "cpu"
    a = load_model(model_cfg, seed=3).model.model.layers[0].mlp.up_proj.weight
    b = load_model(model_cfg, seed=3).model.model.layers[0].mlp.up_proj.weight
    c = load_model(model_cfg, seed=4).model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_quantize_model_replaces_every_linear_and_runs(tiny: tuple[str, ModelConfig]) -> None:
    name, model_cfg = tiny
    loaded = load_model(model_cfg, seed=0)
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    reference = loaded.model(ids).logits
    originals = {
        f"{i}.{p}": get_module(block, p)
        for i, block in enumerate(blocks_of(loaded.model, loaded.arch))
        for p in loaded.arch.linears
    }
    quantize_model(loaded.model, loaded.arch, QuantConfig(w_bits=4, a_bits=8))
    replaced = fake_quant_linears(loaded.model)
    assert len(replaced) == 2 * len(loaded.arch.linears)
    for i, block in enumerate(blocks_of(loaded.model, loaded.arch)):
        for path in loaded.arch.linears:
            module = get_module(block, path)
            assert isinstance(module, FakeQuantLinear)
            assert module.name == f"model.layers.{i}.{path}"
            original = originals[f"{i}.{path}"]
            assert module.weight is original.weight  # shares, does not copy
            assert module.bias is original.bias
            assert module.w_spec.bits == 4 and module.a_spec.bits == 8
    if name == "tiny-qwen2":
        q_proj = get_module(blocks_of(loaded.model, loaded.arch)[0], "self_attn.q_proj")
        assert q_proj.bias is not None
    logits = loaded.model(ids).logits
    assert logits.shape == reference.shape and torch.isfinite(logits).all()
    assert not torch.allclose(logits, reference, atol=1e-4)
    # quantizing again is a no-op (already FakeQuantLinear)
    quantize_model(loaded.model, loaded.arch, QuantConfig(w_bits=2))
    assert all(m.w_spec.bits == 4 for m in fake_quant_linears(loaded.model))


def test_skip_patterns_leave_matching_linears_in_float(
    fresh_2layer: LoadedModel,
) -> None:
    cfg = QuantConfig(w_bits=4, skip=["model.layers.0.*", "*.down_proj"])
    quantize_model(fresh_2layer.model, fresh_2layer.arch, cfg)
    names = {m.name for m in fake_quant_linears(fresh_2layer.model)}
    expected = {f"model.layers.1.{p}" for p in fresh_2layer.arch.linears if "down" not in p}
    assert names == expected


def test_embedded_two_layer_smollm2(smollm2_2layer: LoadedModel) -> None:
    config = smollm2_2layer.model.config
    assert config.model_type == "llama" and config.num_hidden_layers == 2
    assert (config.hidden_size, config.intermediate_size) == (576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert len(blocks_of(smollm2_2layer.model, smollm2_2layer.arch)) == 2
    assert smollm2_2layer.device == torch.device("cpu")
    assert smollm2_2layer.tokenizer.bos_token_id is not None
    ids = smollm2_2layer.tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert smollm2_2layer.add_bos == (ids[0, 0].item() == smollm2_2layer.tokenizer.bos_token_id)
    with torch.no_grad():
        logits = smollm2_2layer.model(ids).logits
    assert logits.shape == (1, ids.shape[1], 49152) and torch.isfinite(logits).all()


def test_load_config_is_cheap_and_honours_layer_count() -> None:
    config = load_config(ModelConfig(num_hidden_layers=3))
    assert config.num_hidden_layers == 3 and config.hidden_size == 576
    full = load_config(ModelConfig())
    assert full.num_hidden_layers == 30


def test_resolve_add_bos(smollm2_2layer: LoadedModel) -> None:
    tok = smollm2_2layer.tokenizer
    assert resolve_add_bos("true", tok) is True
    assert resolve_add_bos("false", tok) is False
    assert resolve_add_bos("auto", tok) == (tok("hello").input_ids[0] == tok.bos_token_id)


def test_unsupported_model_type_lists_supported() -> None:
    with pytest.raises(ValueError, match=r"unsupported model_type 'opt'; supported: .*llama"):
        arch_for("opt")


def test_set_module_replaces_nested_and_top_level() -> None:
    root = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.ReLU())
    set_module(root, "0.0", nn.Identity())
    assert isinstance(root[0][0], nn.Identity)
    set_module(root, "1", nn.Tanh())
    assert isinstance(root[1], nn.Tanh)

