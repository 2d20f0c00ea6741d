"""Block-wise calibration of SmolLM2's first 2 blocks brings their output closer than RTN does."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from abqlab.calib.blockwise import calibrate_blockwise
from abqlab.calib.capture import capture_block_inputs
from abqlab.calib.rtn import calibrate_rtn
from abqlab.calib.train import run_block
from abqlab.config import CalibConfig, DataConfig, QuantConfig
from abqlab.data.sources import calibration_windows
from abqlab.models.arch import blocks_of
from abqlab.models.load import LoadedModel
from abqlab.pipeline import typed
from abqlab.quant.apply import fake_quant_linears, use_abqlab_attention

NSAMPLES, SEQLEN = 4, 64
CASES = {  # preset, quant, epochs, required ratio of calibrated to RTN block-output MSE
    "omniquant-w4a4": ("omniquant", "w4a4", 2, 0.8),
    "abq-w3a16": ("abq", "w3a16", 3, 0.9),
    "gptq-w3a16": ("gptq", "w3a16", 0, 0.5),
}


def copy_of(loaded: LoadedModel) -> LoadedModel:
    model = copy.deepcopy(loaded.model)
    use_abqlab_attention(model)
    return dataclasses.replace(loaded, model=model)


def final_block_output(loaded: LoadedModel, windows: torch.Tensor) -> torch.Tensor:
    """Output of the last block for every window (where the block loss is measured)."""
    x, kwargs = capture_block_inputs(loaded.model, loaded.arch, windows, 1, torch.device("cpu"))
    for block in blocks_of(loaded.model, loaded.arch):
        x = run_block(block, x, kwargs, 1)
    return x


@pytest.mark.parametrize("case", list(CASES))
def test_calibration_beats_rtn_on_two_blocks(
    case: str, smollm2_2layer: LoadedModel, composer: Callable[..., Any], tmp_path: Path
) -> None:
    preset, quant_name, epochs, ratio = CASES[case]
    cfg = composer(
        "model=smollm2-2layer",
        f"quant={quant_name}",
        f"calib={preset}",
        f"calib.nsamples={NSAMPLES}",
        f"calib.seqlen={SEQLEN}",
        f"calib.epochs={epochs}",
        "calib.save=false",
    )
    quant, calib = typed(cfg.quant, QuantConfig), typed(cfg.calib, CalibConfig)
    data = typed(cfg.data, DataConfig)
    windows = calibration_windows(
        smollm2_2layer.tokenizer, data, NSAMPLES, SEQLEN, calib.seed, smollm2_2layer.add_bos
    )
    reference = final_block_output(copy_of(smollm2_2layer), windows)

    rtn = copy_of(smollm2_2layer)
    calibrate_rtn(rtn, quant, CalibConfig(), data, tmp_path)
    rtn_mse = torch.mean((final_block_output(rtn, windows) - reference) ** 2).item()

    calibrated = copy_of(smollm2_2layer)
    summary = calibrate_blockwise(calibrated, quant, calib, data, tmp_path)
    calib_mse = torch.mean((final_block_output(calibrated, windows) - reference) ** 2).item()

    expected = {
        "omniquant": ["Smoothing", "Clipping"],
        "abq": ["Smoothing", "Compensation", "Clipping"],
        "gptq": ["GPTQ"],
    }
    assert summary["components"] == expected[preset]
    assert [b["index"] for b in summary["blocks"]] == [0, 1]
    assert all(math.isfinite(b.get("mse_fp", 0.0)) for b in summary["blocks"])
    linears = fake_quant_linears(calibrated.model)
    assert len(linears) == 14 and all(m.frozen_weight is not None for m in linears)
    assert all(m.w_scale is not None and not m.weight_transforms for m in linears)
    if preset == "gptq":  # freeze() re-quantizes on the GPTQ grid: the weights must not move
        assert all(torch.allclose(m.frozen_weight, m.weight, atol=1e-6) for m in linears)
    assert calib_mse < ratio * rtn_mse, (calib_mse, rtn_mse)
