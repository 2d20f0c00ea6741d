"""One run: load → calibrate/quantize → evaluate → record. Failures are recorded, not lost."""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from abqlab.calib import METHODS
from abqlab.config import (
    CalibConfig,
    DiagnosticsConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    QuantConfig,
)
from abqlab.data.presets import resolve_data, resolve_datasets
from abqlab.eval.runner import evaluate
from abqlab.models.load import load_model
from abqlab.track import inflight
from abqlab.track.environment import environment
from abqlab.track.store import (
    append_record,
    config_hash,
    known_hashes,
    ok_record,
    write_json_atomic,
)
from abqlab.track.wandb_logger import RunLogger

log = logging.getLogger(__name__)

QUANTIZED_FILE = "quantized.pt"


class RunFailedError(RuntimeError):
    """A run ended as ``failed``; its record says why."""


def typed(node: DictConfig, schema: type) -> Any:
    """The group's config as its dataclass (Hydra already validated the types)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


def check_finite(metrics: dict[str, float]) -> None:
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite metrics: {', '.join(bad)}")


def recorded_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as recorded and hashed: dataset specs expanded to their fields, the
    read-only ``data`` alias left out."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("data", None)
    config["calib"]["data"] = asdict(resolve_data(cfg.calib.data))
    config["eval"]["datasets"] = [asdict(d) for d in resolve_datasets(cfg.eval.datasets)]
    return config


def objective_name(cfg: DictConfig) -> str:
    """The metric a sweeper minimises: ``objective``, else ppl of the first eval dataset."""
    if cfg.get("objective"):
        return str(cfg.objective)
    return f"ppl/{resolve_datasets(cfg.eval.datasets)[0].name}"


def objective_value(cfg: DictConfig, record: dict[str, Any]) -> float:
    """The objective of a finished (or skipped) run; NaN when it failed or lacks the metric."""
    value = record.get("metrics", {}).get(objective_name(cfg))
    return float("nan") if record.get("status") not in ("ok", "skipped") or value is None else (
        float(value)
    )


def save_model_if_asked(loaded: Any, quant: QuantConfig, calib: CalibConfig, run_dir: Path) -> None:
    """``calib.save_model``: methods that do not save the model themselves are saved here."""
    path = run_dir / QUANTIZED_FILE
    if calib.save_model and not path.exists():
        from abqlab.calib.checkpoint import save_quantized

        save_quantized(loaded.model, path, {"quant": asdict(quant), "calib": asdict(calib)})


def save_packed_if_possible(model: Any, run_dir: Path) -> dict[str, Any]:
    """The packed save beside quantized.pt (file size = size/bytes), or why it was skipped."""
    from abqlab.alloc.pack import PACKED_FILE, save_packed

    try:
        return save_packed(model, run_dir / PACKED_FILE)
    except ValueError as error:
        return {"skipped": str(error)}


def execute(cfg: DictConfig, run_dir: Path, record: dict[str, Any], logger: RunLogger) -> None:
    """The work of a run; fills ``record`` as it goes."""
    from abqlab.alloc.checks import budget_set
    from abqlab.alloc.run import allocate_bits
    from abqlab.alloc.size import model_size
    from abqlab.track.diagnostics import Probe

    model_cfg, quant_cfg = typed(cfg.model, ModelConfig), typed(cfg.quant, QuantConfig)
    calib_cfg, eval_cfg = typed(cfg.calib, CalibConfig), typed(cfg.eval, EvalConfig)
    calib_data, eval_data = resolve_data(calib_cfg.data), resolve_datasets(eval_cfg.datasets)
    diagnostics = typed(cfg.get("diagnostics") or {}, DiagnosticsConfig)
    if calib_cfg.method == "load" and not Path(str(calib_cfg.load_from)).expanduser().is_file():
        raise FileNotFoundError(f"calib.load_from={calib_cfg.load_from}: no such file")
    start = time.perf_counter()
    loaded = load_model(model_cfg, cfg.seed)
    record["environment"] = environment(loaded.device)
    record["timings"]["load_s"] = time.perf_counter() - start

    if budget_set(quant_cfg) and calib_cfg.method != "load":  # widths per linear, then the method
        start = time.perf_counter()
        quant_cfg, record["allocation"] = allocate_bits(loaded, quant_cfg, calib_data, run_dir)
        record["timings"]["allocation_s"] = time.perf_counter() - start
        logger.log({f"alloc/{k}": v for k, v in record["allocation"].items() if k != "file"})
    probe = Probe(loaded, diagnostics, eval_data[0]) if diagnostics.enabled else None
    if probe is not None:
        probe.before()
    start = time.perf_counter()
    calibrate = METHODS.get(calib_cfg.method)
    record["calibration"] = calibrate(loaded, quant_cfg, calib_cfg, calib_data, run_dir)
    record["timings"]["calibration_s"] = time.perf_counter() - start
    logger.log_calibration(record["calibration"])
    save_model_if_asked(loaded, quant_cfg, calib_cfg, run_dir)
    if calib_cfg.save_model:
        record["packed"] = save_packed_if_possible(loaded.model, run_dir)

    start = time.perf_counter()
    metrics, info = evaluate(loaded, eval_cfg, eval_data, run_dir)
    record["timings"]["eval_s"] = time.perf_counter() - start
    size = model_size(loaded.model)  # size/bytes, size/avg_bits
    metrics["size/model_mb"] = size["size/bytes"] / 2**20  # first: older records have only it
    metrics.update(size)
    record["metrics"], record["eval_info"] = metrics, info
    if probe is not None:
        record["diagnostics"] = probe.after()
    check_finite(metrics)
    logger.log(metrics)


def run(cfg: DictConfig, run_dir: Path, store: Path) -> dict[str, Any]:
    """Run one resolved config; always writes result.json and appends to the store.

    With ``skip_done`` a config whose hash already has an ok record is skipped (the returned
    dict carries that record's metrics). With ``resume`` a run of a config that died without a
    record continues from its finished calibration blocks.
    """
    config = recorded_config(cfg)
    digest = config_hash(config)
    if cfg.skip_done:
        done = ok_record(store, known_hashes(config))
        if done is not None:
            log.info("skipping: config %s already has an ok record in %s", digest, store)
            return {"config_hash": digest, "status": "skipped", "metrics": done.get("metrics", {})}
    if cfg.get("resume", True):
        previous = inflight.previous_run_dir(store, digest)
        if previous is not None:
            inflight.adopt_checkpoints(previous, run_dir)
    inflight.mark_started(store, digest, run_dir)
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
        inflight.mark_finished(store, digest)
        if record["status"] == "ok":
            from abqlab.calib.checkpoint import clear_resume_state

            clear_resume_state(run_dir / "calib")
        logger.finish({**record["metrics"], "status": record["status"]}, record["status"] != "ok")
    return record
