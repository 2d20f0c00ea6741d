"""Saving the quantized model and loading it back: unit round trip and through the pipeline."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from calib_util import tiny_llama

import abqlab.pipeline as pipeline
from abqlab.calib.checkpoint import CalibCheckpoint, load_quantized, save_quantized
from abqlab.config import QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import fake_quant_linears, freeze_model, quantize_model


@pytest.mark.parametrize(
    ("sym", "group"),
    [
        (False, -1),
        (False, 16),
        (True, -1),  # was broken: the exported zero (zero - qmin) was used as the grid's zero
        (True, 16),
    ],
)
def test_round_trip_reproduces_logits(tmp_path: Path, sym: bool, group: int) -> None:
    saved, fresh = tiny_llama(seed=8), tiny_llama(seed=8)
    quant = QuantConfig(name="w4", w_bits=4, w_sym=sym, w_group=group, a_bits=8)
    quantize_model(saved.model, saved.arch, quant)
    norm = saved.model.model.layers[1].input_layernorm.weight
    norm.data.mul_(torch.linspace(0.5, 2.0, norm.numel()))  # as a folded smoothing scale would
    freeze_model(saved.model)
    save_quantized(saved.model, tmp_path / "q.pt", {"quant": asdict(quant), "calib": {}})
    config = load_quantized(fresh.model, fresh.arch, tmp_path / "q.pt")
    assert config["quant"] == asdict(quant)
    assert torch.equal(fresh.model.model.layers[1].input_layernorm.weight, norm)
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = saved.model(ids).logits, fresh.model(ids).logits
    assert torch.allclose(actual, expected, atol=1e-5), (actual - expected).abs().max()


def spy_on_models(monkeypatch: pytest.MonkeyPatch) -> list[LoadedModel]:
    """Record the model each pipeline run evaluates."""
    seen: list[LoadedModel] = []
    original = pipeline.evaluate

    def evaluate(loaded: LoadedModel, *args: Any, **kwargs: Any) -> Any:
        seen.append(loaded)
        return original(loaded, *args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    return seen


def test_pipeline_save_then_load(
    run_pipeline: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    smollm2_2layer: LoadedModel,
) -> None:
    seen = spy_on_models(monkeypatch)
    tiny = ("calib.nsamples=2", "calib.seqlen=32", "calib.epochs=1")
    first = run_pipeline("quant=w4a8", "calib=abq", "calib.save_model=true", *tiny, name="abq")
    assert first["status"] == "ok", first.get("reason")
    run_dir: Path = first["_run_dir"]
    assert (run_dir / "quantized.pt").is_file()
    blocks = CalibCheckpoint(run_dir / "calib").load()
    assert sorted(p.name for p in (run_dir / "calib").iterdir()) == ["block_000.pt", "block_001.pt"]
    assert set(blocks) == {0, 1}
    for state in blocks.values():
        assert set(state) == {"Smoothing", "Clipping", "Compensation"}
        assert set(state["Smoothing"]) == {"qkv", "vo", "gate_up", "up_down"}
        assert set(state["Compensation"]) == {"mlp.down_proj"}
        assert state["Compensation"]["mlp.down_proj"]["a"].abs().sum() > 0  # trained
    # the checkpointed qkv scale is what was folded into the calibrated model's norm
    float_norm = smollm2_2layer.model.model.layers[0].input_layernorm.weight
    calibrated_norm = seen[0].model.model.layers[0].input_layernorm.weight
    assert torch.allclose(calibrated_norm * blocks[0]["Smoothing"]["qkv"], float_norm, rtol=1e-5)

    second = run_pipeline(
        "quant=w4a8", "calib=load", f"calib.load_from={run_dir / 'quantized.pt'}", name="load"
    )
    assert second["status"] == "ok", second.get("reason")
    assert second["calibration"]["loaded_from"] == str(run_dir / "quantized.pt")
    ppl_saved, ppl_loaded = first["metrics"]["ppl/wiki"], second["metrics"]["ppl/wiki"]
    assert math.isfinite(ppl_saved)
    assert ppl_loaded == pytest.approx(ppl_saved, rel=1e-5)
    assert json.loads((second["_run_dir"] / "result.json").read_text())["status"] == "ok"
    ids = torch.randint(0, 1000, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = seen[0].model(ids).logits, seen[1].model(ids).logits
    assert torch.allclose(actual, expected, atol=1e-4), (actual - expected).abs().max()
    assert len(fake_quant_linears(seen[1].model)) == 14
