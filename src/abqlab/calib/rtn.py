"""Round-to-nearest: quantize every linear with its own min/max range, no calibration data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abqlab.config import CalibConfig, DataConfig, QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import freeze_model, quantize_model


def calibrate_rtn(
    loaded: LoadedModel,
    quant: QuantConfig,
    calib: CalibConfig,
    data: DataConfig,
    run_dir: Path,
) -> dict[str, Any]:
    """Replace linears with fake-quant ones and cache their quantized weights."""
    del calib, data, run_dir
    quantize_model(loaded.model, loaded.arch, quant)
    freeze_model(loaded.model)
    return {}
