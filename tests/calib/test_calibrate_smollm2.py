"""Block-wise calibration of SmolLM2's first 2 blocks brings their output closer than RTN does."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch

from abqlab.calib.blockwise import calibrate_blockwise
from abqlab.calib.capture import capture_block_inputs
from abqlab.calib.rtn import calibrate_rtn
from abqlab.calib.train import run_block
from abqlab.config import CalibConfig, DataConfig, QuantConfig
from abqlab.data.sources import calibration_windows
from abqlab.models.arch import blocks_of
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import fake_quant_linears, use_abqlab_attention

NSAMPLES, SEQLEN, SEED = 4, 64, 2
W4A4 = QuantConfig(name="w4a4", w_bits=4, a_bits=4)
OMNIQUANT = CalibConfig(
    name="omniquant",
    method="blockwise",
    nsamples=NSAMPLES,
    seqlen=SEQLEN,
    seed=SEED,
    epochs=2,
    components={"smoothing": {"lr": 5e-3, "alpha": 0.5}, "clipping": {"lr": 1e-2, "init": 4.0}},
    losses={"mse_fp": 1.0},
    save=False,
)


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


def test_omniquant_beats_rtn_on_two_blocks(smollm2_2layer: LoadedModel, tmp_path: Path) -> None:
    data = DataConfig()
    windows = calibration_windows(
        smollm2_2layer.tokenizer, data, NSAMPLES, SEQLEN, SEED, smollm2_2layer.add_bos
    )
    reference = final_block_output(copy_of(smollm2_2layer), windows)

    rtn = copy_of(smollm2_2layer)
    calibrate_rtn(rtn, W4A4, CalibConfig(), data, tmp_path)
    rtn_mse = torch.mean((final_block_output(rtn, windows) - reference) ** 2).item()

    calibrated = copy_of(smollm2_2layer)
    summary = calibrate_blockwise(calibrated, W4A4, OMNIQUANT, data, tmp_path)
    calib_mse = torch.mean((final_block_output(calibrated, windows) - reference) ** 2).item()

    assert summary["components"] == ["Smoothing", "Clipping"]
    assert [b["index"] for b in summary["blocks"]] == [0, 1]
    assert all(math.isfinite(b["mse_fp"]) for b in summary["blocks"])
    linears = fake_quant_linears(calibrated.model)
    assert len(linears) == 14 and all(m.frozen_weight is not None for m in linears)
    assert all(m.w_scale is not None and not m.weight_transforms for m in linears)
    # the trainer's last-epoch loss on the last block is the same quantity, measured per batch
    assert summary["blocks"][-1]["mse_fp"] < 1.5 * rtn_mse
    print(calib_mse, rtn_mse, summary)
    assert calib_mse < 0.8 * rtn_mse, (calib_mse, rtn_mse)
