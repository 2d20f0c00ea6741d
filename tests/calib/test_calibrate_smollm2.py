"""Block-wise calibration of SmolLM2's first 2 blocks, over 3 calibration seeds: it beats RTN by a
margin, never ends a block above its initialisation, and more epochs never end above fewer.

Margins are set from measurements on 3 seeds with room to spare (see each case), so that they
hold on any x86 CPU and thread count, not only on one machine's float rounding.
"""

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

NSAMPLES, SEQLEN, SEEDS = 4, 64, (1, 2, 3)
# preset, quant, epochs, required ratio of calibrated to RTN last-block MSE. Measured ratios over
# seeds 1-3: omniquant-w4a4 0.52/0.55/0.41, abq-w4a4 0.56/0.53/0.39, abq-w3a16 0.52/0.60/0.71
# (at 3 epochs one seed was above RTN: 1.05), gptq-w3a16 0.02-0.03.
CASES = {
    "omniquant-w4a4": ("omniquant", "w4a4", 2, 0.8),
    "abq-w4a4": ("abq", "w4a4", 2, 0.8),
    "abq-w3a16": ("abq", "w3a16", 6, 0.9),
    "gptq-w3a16": ("gptq", "w3a16", 0, 0.5),
}
EXPECTED_COMPONENTS = {
    "omniquant": ["Smoothing", "Clipping"],
    "abq": ["Smoothing", "Compensation", "Clipping"],
    "gptq": ["GPTQ"],
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


class TwoBlocks:
    """Calibrate the 2-layer model with a preset and measure its last block against float."""

    def __init__(self, loaded: LoadedModel, composer: Callable[..., Any], tmp: Path) -> None:
        self.loaded, self.composer, self.tmp = loaded, composer, tmp

    def configs(self, preset: str, quant: str, *overrides: str) -> tuple:
        cfg = self.composer(
            "model=smollm2-2layer",
            f"quant={quant}",
            f"calib={preset}",
            f"calib.nsamples={NSAMPLES}",
            f"calib.seqlen={SEQLEN}",
            "calib.save=false",
            *overrides,
        )
        return (
            typed(cfg.quant, QuantConfig),
            typed(cfg.calib, CalibConfig),
            typed(cfg.data, DataConfig),
        )

    def reference(self, data: DataConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = calibration_windows(
            self.loaded.tokenizer, data, NSAMPLES, SEQLEN, seed, self.loaded.add_bos
        )
        return windows, final_block_output(copy_of(self.loaded), windows)

    def mse(self, loaded: LoadedModel, windows: torch.Tensor, reference: torch.Tensor) -> float:
        return torch.mean((final_block_output(loaded, windows) - reference) ** 2).item()

    def rtn_mse(self, quant: QuantConfig, data: DataConfig, seed: int) -> float:
        windows, reference = self.reference(data, seed)
        rtn = copy_of(self.loaded)
        calibrate_rtn(rtn, quant, CalibConfig(), data, self.tmp)
        return self.mse(rtn, windows, reference)

    def calibrated(self, preset: str, quant: str, seed: int, *overrides: str) -> tuple:
        q, calib, data = self.configs(preset, quant, f"calib.seed={seed}", *overrides)
        windows, reference = self.reference(data, seed)
        model = copy_of(self.loaded)
        summary = calibrate_blockwise(model, q, calib, data, self.tmp)
        return self.mse(model, windows, reference), summary, model


@pytest.fixture
def two_blocks(
    smollm2_2layer: LoadedModel, composer: Callable[..., Any], tmp_path: Path
) -> TwoBlocks:
    return TwoBlocks(smollm2_2layer, composer, tmp_path)


@pytest.mark.parametrize("case", list(CASES))
def test_calibration_beats_rtn_on_two_blocks_for_every_seed(
    case: str, two_blocks: TwoBlocks
) -> None:
    preset, quant_name, epochs, ratio = CASES[case]
    quant, _, data = two_blocks.configs(preset, quant_name)
    ratios = []
    for seed in SEEDS:
        calib_mse, summary, model = two_blocks.calibrated(
            preset, quant_name, seed, f"calib.epochs={epochs}"
        )
        ratios.append(calib_mse / two_blocks.rtn_mse(quant, data, seed))
        assert summary["components"] == EXPECTED_COMPONENTS[preset]
        assert [b["index"] for b in summary["blocks"]] == [0, 1]
        for block in summary["blocks"]:
            if "init_loss" in block:  # trained blocks: never above the start
                assert math.isfinite(block["loss"]) and block["loss"] <= block["init_loss"]
        linears = fake_quant_linears(model.model)
        assert len(linears) == 14 and all(m.frozen_weight is not None for m in linears)
        assert all(m.w_scale is not None and not m.weight_transforms for m in linears)
        if preset == "gptq":  # freeze() re-quantizes on the GPTQ grid: the weights must not move
            assert all(torch.allclose(m.frozen_weight, m.weight, atol=1e-6) for m in linears)
    assert max(ratios) < ratio, ratios


def test_more_epochs_never_end_above_fewer(two_blocks: TwoBlocks) -> None:
    """Block losses on the training windows with 1, 2, 4 epochs (2% slack for float noise)."""
    for seed in SEEDS:
        losses = []
        for epochs in (1, 2, 4):
            _, summary, _ = two_blocks.calibrated(
                "omniquant", "w4a4", seed, f"calib.epochs={epochs}"
            )
            losses.append(summary["blocks"][0]["loss"])
        assert losses[1] <= 1.02 * losses[0] and losses[2] <= 1.02 * losses[1], (seed, losses)
