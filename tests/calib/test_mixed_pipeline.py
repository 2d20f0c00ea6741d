"""A mixed-precision run end to end (2-block SmolLM2, GPTQ at each linear's allocated width)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize("preset", ["mixed", "mixed-learned"])
def test_budgeted_gptq_run_records_its_allocation(
    run_pipeline: Callable[..., dict[str, Any]], tmp_path: Path, preset: str
) -> None:
    record = run_pipeline(
        f"quant={preset}", "calib=gptq", "calib.nsamples=2", "calib.seqlen=32",
        "quant.budget.avg_bits=3.2", "quant.budget.nsamples=2", "quant.budget.seqlen=32",
        "quant.budget.steps=3", f"quant.budget.cache_dir={tmp_path / 'cache'}",
        "calib.save_model=true",
    )
    assert record["status"] == "ok", record.get("reason")
    allocation, metrics = record["allocation"], record["metrics"]
    assert metrics["size/bytes"] == allocation["bytes"] <= allocation["budget_bytes"]
    assert metrics["size/avg_bits"] == pytest.approx(allocation["avg_bits"], rel=1e-12)
    assert metrics["size/avg_bits"] <= 3.2
    assert metrics["size/model_mb"] == metrics["size/bytes"] / 2**20
    assert len(set(allocation["layer_bits"].values())) > 1
    saved = json.loads((record["_run_dir"] / "result.json").read_text())
    assert saved["allocation"]["layer_bits"] == allocation["layer_bits"]
    assert saved["config"]["quant"]["budget"]["avg_bits"] == 3.2
    packed = record["packed"]  # the packed file holds the accounted bytes (+ codes' rounding)
    assert 0 <= packed["tensor_bytes"] - metrics["size/bytes"] <= len(allocation["layer_bits"])


def test_saved_mixed_model_reloads_with_its_widths(
    run_pipeline: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    first = run_pipeline(
        "quant=mixed", "calib=rtn", "calib.save_model=true", "quant.budget.avg_bits=3.2",
        "quant.budget.nsamples=2", "quant.budget.seqlen=32",
        f"quant.budget.cache_dir={tmp_path / 'cache'}",
    )
    assert first["status"] == "ok", first.get("reason")
    second = run_pipeline(
        "quant=w3a16", "calib=load", f"calib.load_from={first['_run_dir'] / 'quantized.pt'}"
    )
    assert second["status"] == "ok", second.get("reason")
    assert second["calibration"]["saved_quant"]["layer_bits"] == first["allocation"]["layer_bits"]
    assert second["metrics"]["size/bytes"] == first["metrics"]["size/bytes"]
    assert second["metrics"]["ppl/wiki"] == pytest.approx(first["metrics"]["ppl/wiki"], rel=1e-3)
