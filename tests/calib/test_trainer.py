"""BlockTrainer on a tiny block: the loss falls, the best epoch is kept, a NaN stops it clearly."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from calib_util import BlockCase, block_case, tiny_llama

from abqlab.calib.components import build_component
from abqlab.calib.schedule import lr_lambda
from abqlab.calib.train import BlockTrainer, CalibrationDivergedError
from abqlab.config import CalibConfig, QuantConfig

W3A8 = QuantConfig(name="w3a8", w_bits=3, a_bits=8)


class Progress:
    def set_postfix(self, **kwargs: Any) -> None:
        self.last = kwargs


def train(
    epochs: int,
    losses: dict[str, float],
    seed: int = 0,
    smoothing_lr: float = 2e-2,
    **calib: Any,
) -> tuple[dict[str, Any], BlockCase]:
    case = block_case(tiny_llama(seed=9), index=1, n=4)
    ctx = case.context(W3A8)
    cfg = CalibConfig(
        method="blockwise", epochs=epochs, batch_size=2, losses=losses, seed=seed, **calib
    )
    components = [
        build_component("smoothing", {"lr": smoothing_lr}),
        build_component("clipping", {"lr": 5e-2}),
    ]
    groups = [(c, c.attach(ctx)) for c in components]
    trainer = BlockTrainer(cfg, case.kwargs)
    fp_block = case.float_block if trainer.needs_fp_block else None
    target = case.run(case.float_block)
    means = trainer.train(ctx, fp_block, groups, case.x, case.x, target, target, Progress())
    return means, case


def test_loss_falls_with_epochs_and_the_curve_is_recorded() -> None:
    first, _ = train(1, {"mse_fp": 1.0, "dlc": 1.0})
    later, _ = train(15, {"mse_fp": 1.0, "dlc": 1.0})
    assert {"loss", "mse_fp", "dlc", "init_loss", "best_epoch", "curve"} <= set(first)
    assert later["loss"] < 0.85 * first["init_loss"], (first, later)
    curve = later["curve"]
    assert curve["epoch"] == list(range(-1, 15))
    assert curve["eval_loss"][0] == later["init_loss"]
    assert curve["train_loss"][0] is None and len(curve["train_mse_fp"]) == 16
    assert later["loss"] == min(curve["eval_loss"])


def test_a_harmful_lr_keeps_the_initialisation_with_select_best() -> None:
    """lr 3 in log space multiplies scales by e^±3 per step: training only makes it worse.
    select=best restores the initial parameters (the output equals the untrained block's)."""
    untrained, case0 = train(1, {"mse_fp": 1.0}, smoothing_lr=0.0)
    initial_output = case0.run()
    last, _ = train(3, {"mse_fp": 1.0}, smoothing_lr=3.0, select="last")
    best, case = train(3, {"mse_fp": 1.0}, smoothing_lr=3.0, select="best")
    assert last["loss"] > 2 * last["init_loss"]
    assert best["best_epoch"] == -1 and best["kept_epoch"] == -1
    assert best["loss"] == best["init_loss"] == pytest.approx(untrained["init_loss"], rel=1e-6)
    assert torch.allclose(case.run(), initial_output, rtol=1e-5, atol=1e-6)


def test_patience_stops_early() -> None:
    means, _ = train(8, {"mse_fp": 1.0}, smoothing_lr=3.0, patience=2)
    assert means["epochs_run"] == 2 and means["best_epoch"] == -1


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
    with pytest.raises(CalibrationDivergedError, match=r"block 1 epoch -1: loss is inf"):
        train(1, {"mse_fp": 1.0})


@pytest.mark.parametrize(
    ("schedule", "warmup", "expected"),
    [
        ("constant", 0.0, [1.0, 1.0, 1.0, 1.0]),
        ("constant", 0.5, [0.5, 1.0, 1.0, 1.0]),
        ("cosine", 0.0, [1.0, 0.8535534, 0.5, 0.1464466]),
        ("cosine", 0.5, [0.5, 1.0, 1.0, 0.5]),
    ],
)
def test_lr_schedules(schedule: str, warmup: float, expected: list[float]) -> None:
    factor = lr_lambda(CalibConfig(lr_schedule=schedule, warmup=warmup), total_steps=4)
    assert [factor(step) for step in range(4)] == pytest.approx(expected, abs=1e-6)


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="calib.lr_schedule=linear: allowed: constant, cosine"):
        lr_lambda(CalibConfig(lr_schedule="linear"), total_steps=4)
