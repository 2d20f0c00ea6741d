"""Straight-through estimators: rounding passes gradient 1; fake_quant reaches x and the range."""

from __future__ import annotations

import torch

from abqlab.quant.quantizer import fake_quant
from abqlab.quant.spec import QuantSpec
from abqlab.quant.ste import clamp_ste, round_ste


def test_round_ste_forward_rounds_half_to_even_backward_is_identity() -> None:
    x = torch.tensor([-1.5, -0.4, 0.5, 1.5, 2.49, 2.51], requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y, torch.tensor([-2.0, -0.0, 0.0, 2.0, 2.0, 3.0]))
    weights = torch.arange(1.0, 7.0)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)


def test_round_ste_is_exact_integers() -> None:
    x = torch.randn(10000) * 50
    assert torch.equal(round_ste(x), x.round())


def test_clamp_ste_gradient_one_inside_zero_outside() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    clamp_ste(x, -1.0, 1.0).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_gradient_reaches_x_through_fake_quant() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 32, requires_grad=True)
    weights = torch.randn(4, 32)
    (fake_quant(x, QuantSpec(3, False)) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # every element that is neither the row minimum nor maximum only passes the STE: grad = w
    extreme = (x == x.amin(1, keepdim=True)) | (x == x.amax(1, keepdim=True))
    assert torch.allclose(x.grad[~extreme], weights[~extreme], rtol=1e-5, atol=1e-6)


def test_clipped_elements_get_no_gradient_with_a_fixed_range() -> None:
    x = torch.linspace(-2, 2, 41).reshape(1, -1).requires_grad_(True)
    lo, hi = torch.tensor(-1.0), torch.tensor(1.0)
    fake_quant(x, QuantSpec(4, False, 0), lo, hi).sum().backward()
    step = 2 / 15
    outside = (x.detach() < -1 - step) | (x.detach() > 1 + step)
    inside = x.detach().abs() < 1 - step
    assert torch.all(x.grad[outside] == 0)
    assert torch.allclose(x.grad[inside], torch.ones_like(x.grad[inside]))


def test_gradient_reaches_learnable_range_with_the_right_sign() -> None:
    """Clipping at ±0.5 data spread over ±1: widening the range must lower the MSE."""
    x = torch.linspace(-1, 1, 401).reshape(1, -1)
    for spec in (QuantSpec(4, False, 0), QuantSpec(4, True, 0)):
        lo = torch.tensor([[-0.5]], requires_grad=True)
        hi = torch.tensor([[0.5]], requires_grad=True)
        loss = ((fake_quant(x, spec, lo, hi) - x) ** 2).mean()
        loss.backward()
        assert lo.grad is not None and hi.grad is not None
        assert torch.isfinite(lo.grad).all() and torch.isfinite(hi.grad).all()
        assert hi.grad.item() < 0, spec  # raising hi reduces error
        if not spec.sym:
            assert lo.grad.item() > 0, spec  # lowering lo reduces error


def test_gradient_reaches_per_group_learnable_range() -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 2, 16)  # rows × groups × group size, pre-grouped as [rows, cols]
    flat = x.reshape(3, 32)
    spec = QuantSpec(2, False, 16)
    lo = (x.amin(-1, keepdim=True) * 0.9).requires_grad_(True)
    hi = (x.amax(-1, keepdim=True) * 0.9).requires_grad_(True)
    ((fake_quant(flat, spec, lo, hi) - flat) ** 2).sum().backward()
    assert lo.grad.shape == (3, 2, 1) and hi.grad.shape == (3, 2, 1)
    assert torch.count_nonzero(lo.grad) == 6 and torch.count_nonzero(hi.grad) == 6
