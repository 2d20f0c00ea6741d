"""Round-to-nearest: quantize every linear with its own min/max range, no calibration data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abqlab.calib.components.rotation import prepare_rotation
from abqlab.config import CalibConfig, DataConfig, QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import fake_quant_linears, freeze_model, quantize_model
from abqlab.quant.formats.describe import describe
from abqlab.quant.lorc import apply_lorc


def calibrate_rtn(
    loaded: LoadedModel,
    quant: QuantConfig,
    calib: CalibConfig,
    data: DataConfig,
    run_dir: Path,
) -> dict[str, Any]:
    """Replace linears with fake-quant ones (plus LoRC if asked) and cache their weights."""
    rotation = prepare_rotation(loaded, calib, quant, data, run_dir)  # model level, first
    quantize_model(loaded.model, loaded.arch, quant)
    lorc = apply_lorc(fake_quant_linears(loaded.model), calib.lorc)
    freeze_model(loaded.model)
    return {**rotation, "formats": describe(quant), **({"lorc": lorc} if lorc else {})}
