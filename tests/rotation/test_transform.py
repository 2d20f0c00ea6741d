"""The offline rotation leaves the float function unchanged (1e-4 relative), on GQA llama, tied
and untied heads, biases (qwen2), and SmolLM2's real sizes (576 = 36·16, 1536 = 12·128)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calib"))
from calib_util import TINY_GQA, randomize_norms  # noqa: E402

from abqlab.config import ModelConfig  # noqa: E402
from abqlab.models.load import LoadedModel, load_model  # noqa: E402
from abqlab.quant.apply import use_abqlab_attention  # noqa: E402
from abqlab.rotation.online import OnlineRotation  # noqa: E402
from abqlab.rotation.transform import RotationPlan, rotate_model  # noqa: E402

PLANS = {
    "default": RotationPlan(),
    "everything": RotationPlan(online_o=True, online_qk=True),
    "random": RotationPlan(kind="random", online_o=True, online_qk=True, seed=3),
    "residual only": RotationPlan(heads=False, online_down=False),
    "no residual": RotationPlan(residual=False, online_o=True),
}


@functools.cache
def _tiny(model_type: str, tied: bool) -> LoadedModel:
    settings = {**TINY_GQA, "model_type": model_type, "tie_word_embeddings": tied}
    cfg = ModelConfig(name="tiny", source="random", random_config=settings, device="cpu")
    loaded = load_model(cfg, seed=0)
    use_abqlab_attention(loaded.model)
    randomize_norms(loaded.model)
    return loaded


def tiny(model_type: str = "llama", tied: bool = False) -> LoadedModel:
    """A private copy of a random 2-layer model with GQA and non-unit norms."""
    loaded = _tiny(model_type, tied)
    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))


def logits(loaded: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(ids).logits.double()


def relative_change(loaded: LoadedModel, plan: RotationPlan, vocab: int) -> float:
    ids = torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(0))
    before = logits(loaded, ids)
    rotate_model(loaded.model, loaded.arch, plan)
    return float((logits(loaded, ids) - before).norm() / before.norm())


@pytest.mark.parametrize("plan", list(PLANS), ids=list(PLANS))
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_tiny_gqa_function_unchanged(plan: str, tied: bool) -> None:
    loaded = tiny(tied=tied)
    assert (loaded.model.lm_head.weight is loaded.model.model.embed_tokens.weight) == tied
    assert relative_change(loaded, PLANS[plan], 512) < 1e-4


@pytest.mark.parametrize("model_type", ["qwen2", "mistral"])
def test_other_llama_family_function_unchanged(model_type: str) -> None:
    loaded = tiny(model_type)
    if model_type == "qwen2":  # biases on q/k/v: make them visible
        for block in loaded.model.model.layers:
            block.self_attn.v_proj.bias.data.normal_(0, 0.5)
    assert relative_change(loaded, PLANS["everything"], 512) < 1e-4


def test_rotation_really_changes_the_weights() -> None:
    loaded = tiny()
    before = copy.deepcopy(loaded.model.state_dict())
    rotate_model(loaded.model, loaded.arch, RotationPlan())
    after = loaded.model.state_dict()
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.1.mlp.down_proj.weight", "lm_head.weight"):
        assert not torch.allclose(before[name], after[name], atol=1e-3), name
    norms = [v for k, v in after.items() if k.endswith("norm.weight")]
    assert norms and all(torch.equal(v, torch.ones_like(v)) for v in norms)  # folded


def test_seed_decides_the_rotation() -> None:
    a, b, c = tiny(), tiny(), tiny()
    rotate_model(a.model, a.arch, RotationPlan(seed=1))
    rotate_model(b.model, b.arch, RotationPlan(seed=1))
    rotate_model(c.model, c.arch, RotationPlan(seed=2))
    wa, wb, wc = (m.model.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.allclose(wa, wc, atol=1e-3)


def test_rotating_twice_is_refused() -> None:
    loaded = tiny()
    rotate_model(loaded.model, loaded.arch, RotationPlan())
    with pytest.raises(ValueError, match="already rotated"):
        rotate_model(loaded.model, loaded.arch, RotationPlan())


def test_smollm2_function_unchanged_and_head_untied(fresh_2layer: LoadedModel) -> None:
    loaded = dataclasses.replace(fresh_2layer)
    model = loaded.model
    assert model.lm_head.weight is model.model.embed_tokens.weight  # SmolLM2 ties them
    summary = {}
    ids = torch.randint(0, 49152, (1, 48), generator=torch.Generator().manual_seed(0))
    before = logits(loaded, ids)
    summary = rotate_model(model, loaded.arch, PLANS["everything"])
    after = logits(loaded, ids)
    assert float((after - before).norm() / before.norm()) < 1e-4
    assert summary["untied_head"] is True and model.config.tie_word_embeddings is False
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert summary["residual"] == "n=576, factor=36, inner=H16"
    assert summary["online_down"] == "n=1536, factor=12, inner=H128"
    assert summary["heads"] == "n=64, factor=1, inner=H64"
    down = model.model.layers[0].mlp.down_proj
    assert isinstance(down.input_transform, OnlineRotation)
