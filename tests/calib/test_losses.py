"""Calibration losses on known inputs: MSE terms, double log-cosine, symmetric attention KL."""

from __future__ import annotations

import math

import pytest
import torch

from abqlab.calib.losses import LOSSES
from abqlab.calib.losses.akl import attention_kl, symmetric_kl
from abqlab.calib.losses.dlc import double_log_cosine, log_cosine
from abqlab.calib.losses.mse import mse_fp, mse_fpstar
from abqlab.calib.losses.terms import LossInputs


def rotated(target: torch.Tensor, angle: float) -> torch.Tensor:
    """Each token vector turned by ``angle`` (radians) in a plane containing it, same norm."""
    unit = target / target.norm(dim=-1, keepdim=True)
    other = torch.randn(target.shape, generator=torch.Generator().manual_seed(7))
    other = other - (other * unit).sum(-1, keepdim=True) * unit
    other = other / other.norm(dim=-1, keepdim=True)
    return target.norm(dim=-1, keepdim=True) * (math.cos(angle) * unit + math.sin(angle) * other)


@pytest.fixture
def target() -> torch.Tensor:
    return torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))


def test_registry_names_map_to_the_functions() -> None:
    assert LOSSES.get("mse_fp") is mse_fp
    assert LOSSES.get("mse_fpstar") is mse_fpstar
    assert LOSSES.get("dlc") is double_log_cosine
    assert LOSSES.get("akl") is attention_kl


def test_mse_terms_against_their_own_target() -> None:
    output = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fp = torch.tensor([[1.0, 0.0], [3.0, 1.0]])  # errors 0, 2, 0, 3 → (4 + 9) / 4
    fpstar = torch.tensor([[0.0, 2.0], [3.0, 4.0]])  # errors 1, 0, 0, 0 → 1 / 4
    inputs = LossInputs(output, fp, fpstar)
    assert mse_fp(inputs).item() == pytest.approx(13 / 4)
    assert mse_fpstar(inputs).item() == pytest.approx(1 / 4)
    assert mse_fp(LossInputs(fp, fp, fpstar)).item() == 0.0


def test_dlc_is_zero_for_identical_and_scaled_outputs(target: torch.Tensor) -> None:
    assert double_log_cosine(LossInputs(target, target, target)).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # direction only: a positive rescale of the output costs nothing
    assert double_log_cosine(LossInputs(3 * target, target, target)).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_dlc_equals_minus_log_cos_and_grows_with_the_angle(target: torch.Tensor) -> None:
    angles = [0.1, 0.3, 0.6, 0.9, 1.2, 1.5]
    values = []
    for angle in angles:
        output = rotated(target, angle)
        value = double_log_cosine(LossInputs(output, target, target)).item()
        assert value == pytest.approx(-2 * math.log(math.cos(angle)), rel=1e-4)
        values.append(value)
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_dlc_sums_both_targets(target: torch.Tensor) -> None:
    fpstar = rotated(target, 0.5)
    inputs = LossInputs(target, target, fpstar)  # 0 against fp, −log cos 0.5 against fp*
    assert double_log_cosine(inputs).item() == pytest.approx(-math.log(math.cos(0.5)), rel=1e-4)
    assert log_cosine(fpstar, target).item() == pytest.approx(-math.log(math.cos(0.5)), rel=1e-4)


def test_dlc_has_gradient_towards_the_target(target: torch.Tensor) -> None:
    output = rotated(target, 0.4).requires_grad_(True)
    double_log_cosine(LossInputs(output, target, target)).backward()
    assert output.grad is not None
    with torch.no_grad():
        stepped = output - 0.01 * output.grad
    assert log_cosine(stepped, target) < log_cosine(output.detach(), target)


def random_maps(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    logits = 3 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return logits.softmax(dim=-1)


def test_symmetric_kl_hand_computation() -> None:
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    q = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    expected = (kl_pq + kl_qp + 0.0) / 2  # second row identical; mean over rows
    assert symmetric_kl(p, q).item() == pytest.approx(expected, rel=1e-5)


def test_attention_kl_is_nonnegative_symmetric_and_zero_iff_equal() -> None:
    shape = (2, 3, 4, 4)  # [batch, heads, q, k]
    for seed in range(5):
        a, b = random_maps(shape, seed), random_maps(shape, seed + 100)
        ab = attention_kl(LossInputs(a, a, a, [a], [b])).item()
        ba = attention_kl(LossInputs(a, a, a, [b], [a])).item()
        assert ab > 1e-3
        assert ab == pytest.approx(ba, rel=1e-6)
        assert attention_kl(LossInputs(a, a, a, [a], [a.clone()])).item() == pytest.approx(
            0.0, abs=1e-7
        )


def test_attention_kl_averages_heads_before_the_kl_and_layers_after() -> None:
    """As ABQ-LLM: KL of head-averaged maps, so heads that swap keep the same mean map."""
    p = torch.tensor([[[[0.7, 0.3]], [[0.1, 0.9]]]])  # [1, 2 heads, 1, 2]
    swapped = p.flip(1)
    assert attention_kl(LossInputs(p, p, p, [p], [swapped])).item() == pytest.approx(0, abs=1e-7)
    q = torch.tensor([[[[0.5, 0.5]], [[0.5, 0.5]]]])
    mean_p = torch.tensor([0.4, 0.6])
    by_hand = float(((mean_p - 0.5) * (mean_p.log() - math.log(0.5))).sum())
    two_layers = attention_kl(LossInputs(p, p, p, [p, p], [q, p]))
    assert two_layers.item() == pytest.approx(by_hand / 2, rel=1e-5)


def test_attention_kl_requires_maps(target: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="attention"):
        attention_kl(LossInputs(target, target, target))


def test_token_normalised_mse_weighs_tokens_by_their_relative_error() -> None:
    from abqlab.calib.losses.token_mse import nmse_fp, nmse_fpstar, token_normalised_mse

    target = torch.tensor([[[1.0, 0.0], [1000.0, 0.0]]])  # one massive token
    output = torch.tensor([[[1.1, 0.0], [1100.0, 0.0]]])  # both 10% off
    assert token_normalised_mse(output, target).item() == pytest.approx(0.01, rel=1e-4)
    plain = torch.nn.functional.mse_loss(output, target).item()
    assert plain > 1000  # plain MSE: the massive token is everything
    inputs = LossInputs(output, target, 2 * target)
    assert nmse_fp(inputs).item() == pytest.approx(0.01, rel=1e-4)
    assert nmse_fpstar(inputs).item() == pytest.approx((0.45**2 + 0.45**2) / 2, rel=1e-4)
    assert LOSSES.get("nmse_fp") is nmse_fp and LOSSES.get("nmse_fpstar") is nmse_fpstar
