"""One run: load → calibrate/quantize → evaluate → record. Failures are recorded, not lost."""

from __future__ import annotations

import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from abqlab.calib import METHODS
from abqlab.config import (
    CalibConfig,
    DataConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    QuantConfig,
)
from abqlab.eval.runner import evaluate
from abqlab.models.load import load_model
from abqlab.track.environment import environment
from abqlab.track.store import append_record, config_hash, has_ok_record, write_json_atomic
from abqlab.track.wandb_logger import RunLogger

log = logging.getLogger(__name__)


class RunFailedError(RuntimeError):
    """A run ended as ``failed``; its record says why."""


def typed(node: DictConfig, schema: type) -> Any:
    """The group's config as its dataclass (Hydra already validated the types)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


def check_finite(metrics: dict[str, float]) -> None:
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite metrics: {', '.join(bad)}")


def execute(cfg: DictConfig, run_dir: Path, record: dict[str, Any], logger: RunLogger) -> None:
    """The work of a run; fills ``record`` as it goes."""
    model_cfg, quant_cfg = typed(cfg.model, ModelConfig), typed(cfg.quant, QuantConfig)
    calib_cfg, data_cfg = typed(cfg.calib, CalibConfig), typed(cfg.data, DataConfig)
    eval_cfg = typed(cfg.eval, EvalConfig)
    start = time.perf_counter()
    loaded = load_model(model_cfg, cfg.seed)
    record["environment"] = environment(loaded.device)
    record["timings"]["load_s"] = time.perf_counter() - start

    start = time.perf_counter()
    calibrate = METHODS.get(calib_cfg.method)
    record["calibration"] = calibrate(loaded, quant_cfg, calib_cfg, data_cfg, run_dir)
    record["timings"]["calibration_s"] = time.perf_counter() - start
    logger.log_calibration(record["calibration"])

    start = time.perf_counter()
    metrics, info = evaluate(loaded, eval_cfg, data_cfg, run_dir)
    record["timings"]["eval_s"] = time.perf_counter() - start
    record["metrics"], record["eval_info"] = metrics, info
    check_finite(metrics)
    logger.log(metrics)


def run(cfg: DictConfig, run_dir: Path, store: Path) -> dict[str, Any]:
    """Run one resolved config; always writes result.json and appends to the store."""
    config = OmegaConf.to_container(cfg, resolve=True)
    digest = config_hash(config)
    if cfg.skip_done and has_ok_record(store, digest):
        log.info("skipping: config %s already has an ok record in %s", digest, store)
        return {"config_hash": digest, "status": "skipped"}
    record: dict[str, Any] = {
        "config_hash": digest,
        "config": config,
        "run_dir": str(run_dir),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timings": {},
        "metrics": {},
    }
    name = f"{cfg.model.name}-{cfg.quant.name}-{cfg.calib.name}"
    logger = RunLogger(typed(cfg.logger, LoggerConfig), run_dir, config, name)
    try:
        execute(cfg, run_dir, record, logger)
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - every failure is recorded; a sweep goes on
        record["status"] = "failed"
        record["reason"] = f"{type(error).__name__}: {error}"
        (run_dir / "error.txt").write_text(traceback.format_exc())
        log.error("run failed: %s (traceback in %s)", record["reason"], run_dir / "error.txt")
    finally:
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(run_dir / "result.json", record)
        append_record(store, record)
        logger.finish({**record["metrics"], "status": record["status"]}, record["status"] != "ok")
    return record
