"""BlockTrainer on a tiny block: the loss falls over epochs; a NaN stops it with a clear error."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from calib_util import block_case, tiny_llama

from abqlab.calib.components import build_component
from abqlab.calib.train import BlockTrainer, CalibrationDivergedError
from abqlab.config import CalibConfig, QuantConfig

W3A8 = QuantConfig(name="w3a8", w_bits=3, a_bits=8)


class Progress:
    def set_postfix(self, **kwargs: Any) -> None:
        self.last = kwargs


def train(epochs: int, losses: dict[str, float], seed: int = 0) -> tuple[dict[str, float], Any]:
    case = block_case(tiny_llama(seed=9), index=1, n=4)
    ctx = case.context(W3A8)
    calib = CalibConfig(method="blockwise", epochs=epochs, batch_size=2, losses=losses, seed=seed)
    components = [
        build_component("smoothing", {"lr": 2e-2}),
        build_component("clipping", {"lr": 5e-2}),
    ]
    groups = [(c, c.attach(ctx)) for c in components]
    trainer = BlockTrainer(calib, case.kwargs)
    fp_block = case.float_block if trainer.needs_fp_block else None
    target = case.run(case.float_block)
    means = trainer.train(ctx, fp_block, groups, case.x, case.x, target, target, Progress())
    return means, case


def test_loss_falls_with_epochs() -> None:
    first, _ = train(1, {"mse_fp": 1.0, "dlc": 1.0})
    later, _ = train(15, {"mse_fp": 1.0, "dlc": 1.0})
    assert set(first) == {"loss", "mse_fp", "dlc"}
    assert later["loss"] < 0.85 * first["loss"], (first, later)


def test_akl_records_attention_on_both_blocks() -> None:
    means, _ = train(1, {"mse_fp": 1.0, "akl": 1.0})
    assert means["akl"] > 0
    assert means["loss"] == pytest.approx(means["mse_fp"] + means["akl"], rel=1e-5)


def test_zero_epochs_or_no_losses_train_nothing() -> None:
    assert train(0, {"mse_fp": 1.0})[0] == {}
    assert train(2, {"mse_fp": 0.0})[0] == {}


def test_nan_raises_calibration_diverged(monkeypatch: pytest.MonkeyPatch) -> None:
    original = BlockTrainer.loss

    def poisoned(self: BlockTrainer, inputs: Any) -> Any:
        total, parts = original(self, inputs)
        return total * torch.tensor(float("inf")), parts

    monkeypatch.setattr(BlockTrainer, "loss", poisoned)
    with pytest.raises(CalibrationDivergedError, match=r"block 1 epoch 0: loss is inf"):
        train(1, {"mse_fp": 1.0})
