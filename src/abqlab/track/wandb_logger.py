"""wandb logging, offline by default, every file inside the run's output folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from abqlab.config import LoggerConfig

MODES = ("offline", "online", "disabled")


class RunLogger:
    """Thin wrapper: ``log`` metrics during the run, ``finish`` with the summary."""

    def __init__(self, cfg: LoggerConfig, run_dir: Path, config: dict[str, Any], name: str) -> None:
        self.run = None
        if cfg.name == "none" or cfg.mode == "disabled":
            return
        if cfg.mode not in MODES:
            raise ValueError(f"logger.mode={cfg.mode}: allowed: {', '.join(MODES)}")
        import wandb

        wandb_dir = run_dir / "wandb"
        wandb_dir.mkdir(parents=True, exist_ok=True)
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
            os.environ[var] = str(wandb_dir)
        self.run = wandb.init(
            mode=cfg.mode,
            project=cfg.project,
            entity=cfg.entity,
            dir=str(run_dir),
            config=config,
            name=name,
            tags=list(cfg.tags),
            reinit="finish_previous",
        )

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_calibration(self, summary: dict[str, Any]) -> None:
        """Per-block loss curves: ``calib/block_NN/<eval|train>_<term>`` against ``calib/epoch``."""
        if self.run is None:
            return
        rows = calibration_curve_rows(summary)
        if rows:
            self.run.define_metric("calib/epoch")
            self.run.define_metric("calib/block_*", step_metric="calib/epoch")
        for row in rows:
            self.run.log(row)

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        if self.run is None:
            return
        for key, value in summary.items():
            self.run.summary[key] = value
        self.run.finish(exit_code=1 if failed else 0)
        self.run = None


def calibration_curve_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per epoch (−1 = initialisation) holding every block's losses at that epoch."""
    rows: dict[int, dict[str, Any]] = {}
    for block in summary.get("blocks", []):
        curve = block.get("curve") or {}
        for i, epoch in enumerate(curve.get("epoch", [])):
            row = rows.setdefault(epoch, {"calib/epoch": epoch})
            for key, values in curve.items():
                if key != "epoch" and values[i] is not None:
                    row[f"calib/block_{block['index']:02d}/{key}"] = values[i]
    return [rows[epoch] for epoch in sorted(rows)]
