"""One run end to end on the 2-layer SmolLM2: result.json, the store, skip_done, failures."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from abq_helpers import compose_run
from omegaconf import DictConfig

from abqlab import pipeline
from abqlab.data.sources import split_text, token_stream
from abqlab.eval.perplexity import perplexity
from abqlab.models.load import LoadedModel
from abqlab.registry import Registry
from abqlab.track.store import read_records

SMOKE = (
    "model=smollm2-2layer",
    "eval.max_windows=2",
    "eval.seqlen=128",
    "eval.datasets=[{preset: wiki, max_test_docs: 30}]",
    "logger=none",
)


def smoke_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_run([*SMOKE, f"results_store={tmp_path / 'runs.jsonl'}", *overrides])


def run(tmp_path: Path, name: str, *overrides: str) -> tuple[dict[str, Any], Path]:
    cfg = smoke_cfg(tmp_path, *overrides)
    run_dir = tmp_path / name
    run_dir.mkdir()
    return pipeline.run(cfg, run_dir, tmp_path / "runs.jsonl"), run_dir


@pytest.fixture
def shared_loader(
    smollm2_2layer: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., LoadedModel]:
    """Skip the disk: each run gets a private copy of the session's 2-layer model."""

    def load(cfg: Any, seed: int = 0) -> LoadedModel:
        assert cfg.num_hidden_layers == 2
        return dataclasses.replace(smollm2_2layer, model=_copy(smollm2_2layer.model))

    monkeypatch.setattr(pipeline, "load_model", load)
    return load


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def with_calibrator(monkeypatch: pytest.MonkeyPatch, fn: Callable[..., dict]) -> None:
    methods: Registry = Registry("calibration method")
    methods.register("rtn", fn)
    monkeypatch.setattr(pipeline, "METHODS", methods)


def test_run_writes_result_and_one_store_line(tmp_path: Path) -> None:
    record, run_dir = run(tmp_path, "run")
    assert record["status"] == "ok", record.get("reason")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert len(result["config_hash"]) == 16
    assert result["config"]["model"]["name"] == "smollm2-2layer"
    assert result["config"]["quant"]["name"] == "w4a8"
    ppl = result["metrics"]["ppl/wiki"]
    assert math.isfinite(ppl) and ppl > 1
    assert set(result["timings"]) >= {"load_s", "calibration_s", "eval_s"}
    assert all(v >= 0 for v in result["timings"].values())
    env = result["environment"]
    assert env["packages"]["torch"] and env["device"].startswith("cpu")
    assert result["started"] <= result["finished"]
    records = list(read_records(tmp_path / "runs.jsonl"))
    assert len(records) == 1
    assert records[0] == result
    assert not (run_dir / "wandb").exists()  # logger=none
    assert sorted(p.name for p in run_dir.iterdir()) == ["result.json"]


def test_float_run_perplexity_matches_a_direct_computation(
    tmp_path: Path, smollm2_2layer: LoadedModel, shared_loader: Callable[..., LoadedModel]
) -> None:
    record, _ = run(tmp_path, "fp", "quant=fp")
    assert record["status"] == "ok", record.get("reason")
    from abqlab.config import DataConfig

    text = split_text(DataConfig(max_test_docs=30), "test")
    stream = token_stream(smollm2_2layer.tokenizer, text)
    bos = smollm2_2layer.tokenizer.bos_token_id if smollm2_2layer.add_bos else None
    expected = perplexity(smollm2_2layer.model, stream, 128, 2, bos)
    assert record["metrics"]["ppl/wiki"] == pytest.approx(expected, rel=1e-5)


def test_skip_done_skips_only_an_ok_config(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel]
) -> None:
    first, _ = run(tmp_path, "first", "quant=fp")
    assert first["status"] == "ok"
    again, again_dir = run(tmp_path, "again", "quant=fp", "skip_done=true")
    assert again == {
        "config_hash": first["config_hash"],
        "status": "skipped",
        "metrics": first["metrics"],
    }
    assert not (again_dir / "result.json").exists()
    assert len(list(read_records(tmp_path / "runs.jsonl"))) == 1
    other, _ = run(tmp_path, "other", "quant=fp", "skip_done=true", "eval.seqlen=64")
    assert other["status"] == "ok" and other["config_hash"] != first["config_hash"]
    assert len(list(read_records(tmp_path / "runs.jsonl"))) == 2


def test_skip_done_reruns_a_failed_config(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> dict:
        raise RuntimeError("calibration exploded")

    with_calibrator(monkeypatch, boom)
    failed, _ = run(tmp_path, "failed", "quant=fp")
    assert failed["status"] == "failed"
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "load_model", shared_loader)
    retry, _ = run(tmp_path, "retry", "quant=fp", "skip_done=true")
    assert retry["status"] == "ok" and retry["config_hash"] == failed["config_hash"]


def test_exception_inside_is_recorded_as_failed(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> dict:
        raise RuntimeError("calibration exploded")

    with_calibrator(monkeypatch, boom)
    record, run_dir = run(tmp_path, "run")
    assert record["status"] == "failed"
    assert record["reason"] == "RuntimeError: calibration exploded"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["reason"] == record["reason"]
    assert "Traceback" in (run_dir / "error.txt").read_text()
    assert "calibration exploded" in (run_dir / "error.txt").read_text()
    (line,) = read_records(tmp_path / "runs.jsonl")
    assert line["status"] == "failed" and line["reason"] == record["reason"]
    assert "load_s" in line["timings"] and "eval_s" not in line["timings"]


def test_nan_weights_end_the_run_as_failed(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    def poison(loaded: LoadedModel, *args: Any) -> dict:
        with torch.no_grad():
            loaded.model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
        return {"poisoned": True}

    with_calibrator(monkeypatch, poison)
    record, run_dir = run(tmp_path, "run", "quant=fp")
    assert record["status"] == "failed"
    assert record["reason"] == "FloatingPointError: non-finite metrics: ppl/wiki"
    assert record["calibration"] == {"poisoned": True}
    (line,) = read_records(tmp_path / "runs.jsonl")
    assert line["status"] == "failed"


def test_each_eval_dataset_is_measured_and_calib_data_reaches_the_calibrator(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def spy(loaded: LoadedModel, quant: Any, calib: Any, data: Any, run_dir: Path) -> dict:
        seen.append(data)
        return {}

    with_calibrator(monkeypatch, spy)
    record, _ = run(
        tmp_path, "two", "quant=fp", "calib.data={preset: wiki, name: calwiki, test_every: 7}",
        "eval.datasets=[{preset: wiki, max_test_docs: 30},"
        "{preset: wiki, name: later, skip_test_docs: 300, max_test_docs: 30}]",
    )
    assert record["status"] == "ok", record.get("reason")
    assert seen[0].name == "calwiki" and seen[0].test_every == 7
    metrics = record["metrics"]
    assert {"ppl/wiki", "ppl/later"} <= set(metrics)
    assert metrics["ppl/wiki"] != metrics["ppl/later"]  # different text
    assert record["config"]["calib"]["data"]["name"] == "calwiki"
    assert [d["name"] for d in record["config"]["eval"]["datasets"]] == ["wiki", "later"]
    assert pipeline.objective_value(smoke_cfg(tmp_path), record) == metrics["ppl/wiki"]


def test_objective_is_nan_for_a_failed_run(tmp_path: Path) -> None:
    cfg = smoke_cfg(tmp_path, "objective=ppl/other")
    assert pipeline.objective_name(cfg) == "ppl/other"
    assert math.isnan(pipeline.objective_value(cfg, {"status": "failed", "metrics": {}}))
    skipped = {"status": "skipped", "metrics": {"ppl/other": 3.0}}
    assert pipeline.objective_value(cfg, skipped) == 3.0


def test_rtn_saves_the_model_when_asked_and_load_reproduces_it(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel]
) -> None:
    saved, run_dir = run(tmp_path, "rtn", "quant=w4a8", "calib.save_model=true")
    assert saved["status"] == "ok", saved.get("reason")
    path = run_dir / "quantized.pt"
    assert path.is_file()
    loaded, _ = run(tmp_path, "load", "quant=w4a8", "calib=load", f"calib.load_from={path}")
    assert loaded["status"] == "ok", loaded.get("reason")
    assert loaded["metrics"]["ppl/wiki"] == pytest.approx(saved["metrics"]["ppl/wiki"], rel=1e-5)


def test_diagnostics_and_size_are_recorded(
    tmp_path: Path, shared_loader: Callable[..., LoadedModel], smollm2_2layer: LoadedModel
) -> None:
    fp, _ = run(tmp_path, "fp", "quant=fp", "diagnostics.tokens=12")
    w4, _ = run(tmp_path, "w4", "quant=w4a8", "diagnostics.tokens=12", "diagnostics.head=2")
    diag = w4["diagnostics"]
    assert (diag["block"], diag["head"], diag["tokens"]) == (1, 2, 12)
    hidden = smollm2_2layer.model.config.hidden_size
    for kind in ("float", "quant"):
        attention = torch.tensor(diag[kind]["attention"])
        assert attention.shape == (12, 12)
        assert torch.allclose(attention.sum(-1), torch.ones(12), atol=2e-2)  # 3-digit rounding
        assert torch.all(attention.triu(1) == 0)  # causal
        (linear,) = diag["linears"]
        assert len(diag[kind]["act_absmax"][linear]) == hidden
        assert len(diag[kind]["weight_absmax"][linear]) == hidden
    assert diag["float"]["attention"] != diag["quant"]["attention"]
    assert fp["diagnostics"]["float"]["attention"] == fp["diagnostics"]["quant"]["attention"]
    linears = [m for b in smollm2_2layer.model.model.layers for m in b.modules()
               if isinstance(m, torch.nn.Linear)]
    weights, rows = sum(m.weight.numel() for m in linears), sum(m.out_features for m in linears)
    saved_bits = (16 - 4) * weights - 32 * rows  # 4-bit codes + a 16-bit scale, zero per row
    shrink = fp["metrics"]["size/model_mb"] - w4["metrics"]["size/model_mb"]
    assert shrink == pytest.approx(saved_bits / 8 / 2**20, rel=1e-9)
    off, _ = run(tmp_path, "off", "quant=fp", "diagnostics.enabled=false")
    assert "diagnostics" not in off
