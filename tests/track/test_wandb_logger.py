"""RunLogger: disabled modes write nothing; a bad mode is rejected before wandb starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from abqlab.config import LoggerConfig
from abqlab.track.wandb_logger import RunLogger


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
