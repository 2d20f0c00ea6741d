"""RunLogger: disabled modes write nothing; a bad mode is rejected before wandb starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from abqlab.config import LoggerConfig
from abqlab.track.wandb_logger import RunLogger, calibration_curve_rows


@pytest.mark.parametrize(
    "cfg", [LoggerConfig(name="none", mode="offline"), LoggerConfig(mode="disabled")], ids=str
)
def test_disabled_logger_writes_nothing(cfg: LoggerConfig, tmp_path: Path) -> None:
    logger = RunLogger(cfg, tmp_path, {"a": 1}, "run")
    assert logger.run is None
    logger.log({"ppl": 1.0})
    logger.finish({"ppl": 1.0}, failed=True)
    assert list(tmp_path.iterdir()) == []


def test_bad_mode_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="logger.mode=sometimes: allowed: offline, online"):
        RunLogger(LoggerConfig(mode="sometimes"), tmp_path, {}, "run")
    assert list(tmp_path.iterdir()) == []


def test_calibration_curves_become_one_row_per_epoch() -> None:
    curve = {"epoch": [-1, 0, 1], "eval_loss": [3.0, 2.0, 1.5], "train_loss": [None, 2.5, 1.8]}
    summary = {"blocks": [{"index": 0, "curve": curve}, {"index": 1}]}
    rows = calibration_curve_rows(summary)
    assert [r["calib/epoch"] for r in rows] == [-1, 0, 1]
    assert rows[0] == {"calib/epoch": -1, "calib/block_00/eval_loss": 3.0}
    assert rows[2]["calib/block_00/train_loss"] == 1.8
    assert calibration_curve_rows({"blocks": []}) == []


def test_offline_run_logs_curves_into_its_own_dir(tmp_path: Path) -> None:
    logger = RunLogger(LoggerConfig(mode="offline"), tmp_path, {"a": 1}, "run")
    curve = {"epoch": [-1, 0], "eval_loss": [3.0, 2.0]}
    logger.log_calibration({"blocks": [{"index": 3, "curve": curve}]})
    logger.finish({"ppl": 1.0})
    history = list(tmp_path.glob("wandb/**/run-*.wandb"))
    assert history and history[0].stat().st_size > 0
