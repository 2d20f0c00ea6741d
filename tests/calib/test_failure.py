"""A NaN loss ends the run as a recorded failure; the next run proceeds."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch

from abqlab.calib.losses import LOSSES
from abqlab.calib.losses.terms import LossInputs
from abqlab.track.store import read_records

TINY_CALIB = ("calib=omniquant", "calib.nsamples=2", "calib.seqlen=32", "calib.epochs=1")


def nan_loss(inputs: LossInputs) -> torch.Tensor:
    """The real MSE times NaN: still attached to the graph, as a diverging loss would be."""
    return torch.nn.functional.mse_loss(inputs.output, inputs.target_fp) * float("nan")


def test_nan_loss_is_recorded_and_the_next_run_succeeds(
    run_pipeline: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    LOSSES.get("mse_fp")  # resolve the lazy entry so the patch below replaces a function
    with monkeypatch.context() as patch:
        patch.setitem(LOSSES._entries, "mse_fp", nan_loss)
        failed = run_pipeline("quant=w4a16", *TINY_CALIB, name="nan")
    assert failed["status"] == "failed"
    reason = failed["reason"]
    assert reason.startswith("CalibrationDivergedError: block 0 epoch -1: loss is nan"), reason
    assert "mse_fp" in reason
    run_dir = failed["_run_dir"]
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["reason"] == reason
    assert "CalibrationDivergedError" in (run_dir / "error.txt").read_text()
    assert on_disk["metrics"] == {}

    ok = run_pipeline("quant=w4a16", *TINY_CALIB, name="ok")
    assert ok["status"] == "ok", ok.get("reason")
    assert ok["metrics"]["ppl/wiki"] > 1
    assert json.loads((ok["_run_dir"] / "result.json").read_text())["status"] == "ok"
    records = list(read_records(tmp_path / "runs.jsonl"))
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert records[0]["config_hash"] == records[1]["config_hash"]  # same config, only the loss
    assert records[0]["reason"] == reason
