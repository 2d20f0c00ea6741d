"""The end-to-end learned residual rotation (SpinQuant's R1): exact in float, consistent when
folded, trainable, saved and reloaded with the model, and validated."""

from __future__ import annotations

import copy

import pytest
import torch

from abqlab.config import QuantConfig
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import freeze_model, quantize_model
from abqlab.rotation.cayley import CayleyRotation
from abqlab.rotation.residual import (
    ResidualTraining,
    SharedRotation,
    absorb_residual,
    cached_teacher,
    held_out_loss,
    learn_residual_rotation,
    quantization_off,
    rotated_quantized,
    window_loss,
)
from abqlab.rotation.transform import RotationPlan, rotate_model

W4A4 = QuantConfig(name="w4a4", w_bits=4, a_bits=4)


def rotated(loaded: LoadedModel) -> LoadedModel:
    rotate_model(loaded.model, loaded.arch, RotationPlan())
    return loaded


def random_rotation(n: int, seed: int = 0) -> SharedRotation:
    rotation = CayleyRotation(n)
    with torch.no_grad():
        rotation.theta.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed))
    shared = SharedRotation(rotation)
    shared.refresh()
    return shared


def windows(n: int, length: int = 24) -> torch.Tensor:
    return torch.randint(0, 2000, (n, length), generator=torch.Generator().manual_seed(1))


def test_float_function_unchanged_under_any_rotation(fresh_2layer: LoadedModel) -> None:
    loaded = rotated(fresh_2layer)
    ids = windows(1)
    with torch.no_grad():
        before = loaded.model(ids).logits.double()
    shared = random_rotation(loaded.model.config.hidden_size)
    assert (shared.current - torch.eye(shared.rotation.n)).abs().max() > 0.05  # not ~identity
    with rotated_quantized(loaded.model, loaded.arch, W4A4, shared) as wrapped:
        with torch.no_grad(), quantization_off(loaded.model, wrapped):
            after = loaded.model(ids).logits.double()
        with torch.no_grad():
            quantized = loaded.model(ids).logits.double()
    assert float((after - before).norm() / before.norm()) < 1e-4
    assert float((quantized - before).norm() / before.norm()) > 1e-3  # quantization was on


def test_model_restored_after_training_view(fresh_2layer: LoadedModel) -> None:
    loaded = rotated(fresh_2layer)
    reference = copy.deepcopy(loaded.model.state_dict())
    modules = [type(m).__name__ for m in loaded.model.modules()]
    shared = random_rotation(loaded.model.config.hidden_size)
    with rotated_quantized(loaded.model, loaded.arch, W4A4, shared):
        pass
    assert [type(m).__name__ for m in loaded.model.modules()] == modules
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reference.items())


def test_folded_rotation_quantizes_as_trained(fresh_2layer: LoadedModel) -> None:
    """Folding R into the weights, then plain RTN, gives the loss the training view measured."""
    loaded = rotated(fresh_2layer)
    ids = windows(2)
    shared = random_rotation(loaded.model.config.hidden_size, seed=3)
    with rotated_quantized(loaded.model, loaded.arch, W4A4, shared) as wrapped:
        seen = held_out_loss(loaded.model, wrapped, shared, ids, "ce")
    absorb_residual(loaded.model, loaded.arch, shared.current.detach())
    quantize_model(loaded.model, loaded.arch, W4A4)
    freeze_model(loaded.model)
    with torch.no_grad():
        folded = sum(window_loss(loaded.model, [], w[None], "ce") for w in ids) / len(ids)
    assert float(folded) == pytest.approx(seen, rel=2e-3)


def test_training_moves_the_rotation_and_records_curves(fresh_2layer: LoadedModel) -> None:
    loaded = rotated(fresh_2layer)
    grads = [p.requires_grad for p in loaded.model.parameters()]
    training = ResidualTraining(steps=4, lr=1e-2, loss="kl", eval_every=2)
    matrix, summary = learn_residual_rotation(
        loaded.model, loaded.arch, W4A4, windows(4), training, seed=0)
    eye = torch.eye(matrix.shape[0])
    assert torch.allclose(matrix @ matrix.T, eye, atol=1e-4)  # orthogonal
    assert len(summary["train_curve"]) == 4 and all(v > 0 for v in summary["train_curve"])
    assert [s for s, _ in summary["held_out_curve"]] == [0, 2, 4]
    assert summary["held_out_best"] == min(v for _, v in summary["held_out_curve"])
    if summary["best_step"] > 0:
        assert (matrix - eye).abs().max() > 1e-4
    assert [p.requires_grad for p in loaded.model.parameters()] == grads  # restored


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="loss"):
        ResidualTraining(loss="mse")
    with pytest.raises(ValueError, match="steps"):
        ResidualTraining(steps=0)


def test_weights_left_in_float_when_asked(fresh_2layer: LoadedModel) -> None:
    """weights=False: with W4A16 nothing is quantized in the loop, so the KL is zero."""
    loaded = rotated(fresh_2layer)
    w4a16 = QuantConfig(name="w4a16", w_bits=4, a_bits=16)
    float_weights = ResidualTraining(steps=1, eval_every=1, weights=False)
    _, summary = learn_residual_rotation(
        loaded.model, loaded.arch, w4a16, windows(2), float_weights, seed=0)
    assert summary["held_out_start"] < 1e-6 and summary["weights_quantized"] is False
    _, quantized = learn_residual_rotation(
        loaded.model, loaded.arch, w4a16, windows(2), ResidualTraining(steps=1), seed=0)
    assert quantized["held_out_start"] > 1e-3


def test_cached_teacher_gives_the_same_kl(fresh_2layer: LoadedModel) -> None:
    loaded = rotated(fresh_2layer)
    ids = windows(2)
    shared = random_rotation(loaded.model.config.hidden_size, seed=5)
    with rotated_quantized(loaded.model, loaded.arch, W4A4, shared) as wrapped:
        teachers = cached_teacher(loaded.model, wrapped, shared, ids, "kl")
        cached = held_out_loss(loaded.model, wrapped, shared, ids, "kl", teachers)
        fresh = held_out_loss(loaded.model, wrapped, shared, ids, "kl")
        assert cached_teacher(loaded.model, wrapped, shared, ids, "ce") is None
    assert teachers is not None and teachers[0].dtype == torch.bfloat16
    assert cached == pytest.approx(fresh, rel=2e-2) and fresh > 1e-3


def test_batches_of_windows_per_step(fresh_2layer: LoadedModel) -> None:
    loaded = rotated(fresh_2layer)
    _, summary = learn_residual_rotation(
        loaded.model, loaded.arch, W4A4, windows(6), ResidualTraining(steps=2, batch=2), seed=0)
    assert summary["batch"] == 2 and len(summary["train_curve"]) == 2
    assert summary["teacher_cached"] is True
    with pytest.raises(ValueError, match="batch"):
        ResidualTraining(batch=0)
