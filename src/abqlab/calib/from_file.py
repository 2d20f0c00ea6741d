"""``calib=load calib.load_from=<run_dir>/quantized.pt``: evaluate a saved quantized model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abqlab.calib.checkpoint import load_quantized
from abqlab.config import CalibConfig, DataConfig, QuantConfig
from abqlab.models.load import LoadedModel


def calibrate_from_file(
    loaded: LoadedModel, quant: QuantConfig, calib: CalibConfig, data: DataConfig, run_dir: Path
) -> dict[str, Any]:
    del quant, data, run_dir
    if not calib.load_from:
        raise ValueError("calib.load_from: path of a quantized.pt is required for method=load")
    config = load_quantized(loaded.model, loaded.arch, Path(calib.load_from).expanduser())
    return {"loaded_from": calib.load_from, "saved_quant": config["quant"]}
