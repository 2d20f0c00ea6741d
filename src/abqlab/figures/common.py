"""Shared pieces of the figures: record selection, saving as PNG and PDF, wandb images.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global backend), so they work
the same in scripts, tests and notebooks.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from abqlab.tables.layout import is_float, row_label, setting_label

FORMATS = ("png", "pdf")


def ok_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


def method(record: dict[str, Any]) -> str:
    return row_label(record, "calib")


def setting(record: dict[str, Any]) -> str:
    return setting_label(record.get("config", {}).get("quant", {}))


def quantized(record: dict[str, Any]) -> bool:
    return not is_float(record.get("config", {}).get("quant", {}))


def first_metric(records: list[dict[str, Any]], prefix: str = "ppl/") -> str | None:
    for record in records:
        for name in record.get("metrics", {}):
            if name.startswith(prefix):
                return name
    return None


def main_setting(records: list[dict[str, Any]]) -> str | None:
    """The quantized setting with the most records (ties: the first seen)."""
    counts = Counter(setting(r) for r in records if quantized(r))
    return counts.most_common(1)[0][0] if counts else None


def latest_per_method(records: list[dict[str, Any]], where: Any) -> dict[str, dict[str, Any]]:
    """The last record per method among those for which ``where(record)`` holds."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        if where(record):
            chosen[method(record)] = record
    return chosen


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save(figure: Figure, out: Path, name: str) -> list[Path]:
    """``out/name.png`` (150 dpi) and ``out/name.pdf``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out / f"{name}.{fmt}"
        figure.savefig(path, dpi=150 if fmt == "png" else None)
        paths.append(path)
    return paths


def log_to_wandb(pngs: dict[str, Path], out: Path, mode: str, project: str = "abqlab") -> Path:
    """One wandb run (offline by default: files under ``out/wandb``) with every PNG as an image."""
    import wandb

    wandb_dir = out / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        os.environ[var] = str(wandb_dir)
    run = wandb.init(mode=mode, project=project, dir=str(out), job_type="figures",
                     name=f"figures-{out.name}", reinit="finish_previous")
    run.log({f"figures/{name}": wandb.Image(str(path)) for name, path in pngs.items()})
    run.finish()
    return wandb_dir
