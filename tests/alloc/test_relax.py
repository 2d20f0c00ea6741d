"""The learned allocator's relaxations: exact at the vertices, and (rms) never more accurate
than the candidates it mixes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from abqlab.alloc.learned import price_to_budget
from abqlab.alloc.relax import MixtureLinear, mix_weight


def candidates(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A float weight and three 'quantized' versions of it at decreasing error."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(16, 32, generator=g)
    stack = torch.stack([(base * s).round() / s for s in (1.0, 2.0, 8.0)])
    return base, stack


@pytest.mark.parametrize("relaxation", ["rms", "linear"])
def test_one_hot_choice_is_that_candidate(relaxation: str) -> None:
    base, stack = candidates()
    for k in range(3):
        probs = torch.nn.functional.one_hot(torch.tensor(k), 3).float()
        mixed = mix_weight(relaxation, probs, base, stack - base)
        assert torch.allclose(mixed, stack[k], atol=1e-6)


def test_rms_mixture_error_is_the_expected_error_of_a_draw() -> None:
    base, stack = candidates(1)
    probs = torch.tensor([0.3, 0.3, 0.4])
    errors = stack - base
    rms = mix_weight("rms", probs, base, errors) - base
    expected = (probs[:, None, None] * errors.square()).sum(0)
    assert torch.allclose(rms.square(), expected, rtol=1e-5, atol=1e-7)
    assert rms.square().sum() >= errors.square().sum((1, 2)).min()


def test_linear_mixture_can_beat_every_candidate_and_rms_cannot() -> None:
    base, _ = candidates(2)
    noise = 0.1 * torch.randn(base.shape, generator=torch.Generator().manual_seed(3))
    errors = torch.stack([noise, -noise])  # two candidates erring in opposite directions
    half = torch.tensor([0.5, 0.5])
    assert torch.allclose(mix_weight("linear", half, base, errors), base)  # errors cancel
    rms = mix_weight("rms", half, base, errors) - base
    assert torch.allclose(rms.abs(), noise.abs(), atol=1e-5)


def test_rms_relaxation_is_differentiable_where_candidates_agree() -> None:
    base, _ = candidates()
    stack = base.expand(3, *base.shape).clone()  # every candidate exact
    mix = MixtureLinear(nn.Linear(32, 16, bias=False), stack, torch.zeros(3), "rms")
    mix.linear.weight.data.copy_(base)
    mix.base.copy_(base)
    mix.errors.zero_()
    mix(torch.randn(4, 32)).sum().backward()
    assert torch.isfinite(mix.logits.grad).all()


def test_unknown_relaxation_is_refused() -> None:
    base, stack = candidates()
    with pytest.raises(ValueError, match="unknown relaxation 'soft'"):
        MixtureLinear(nn.Linear(32, 16), stack, torch.zeros(3), "soft")


def test_price_meets_the_budget_in_expectation() -> None:
    torch.manual_seed(0)
    mixes = {}
    for i in range(5):
        base, stack = candidates(i)
        linear = nn.Linear(32, 16, bias=False)
        linear.weight.data.copy_(base)
        mixes[str(i)] = MixtureLinear(linear, stack, torch.randn(3), "rms")
    costs = torch.tensor([[0.6, 1.0, 1.4]] * 5, dtype=torch.float64)
    # logits that prefer the widest candidate: over budget at price 0, priced down to it
    for mix in mixes.values():
        mix.logits.data = torch.tensor([0.0, 0.0, 3.0])
    assert price_to_budget(mixes, costs) == pytest.approx(1.0, abs=1e-6)
    assert all(float(m.offset[2]) > 0 for m in mixes.values())
    # logits that prefer the narrowest: under budget already, no price
    for mix in mixes.values():
        mix.logits.data = torch.tensor([3.0, 0.0, 0.0])
    assert price_to_budget(mixes, costs) < 1.0
    assert all(float(m.offset.abs().max()) == 0.0 for m in mixes.values())
