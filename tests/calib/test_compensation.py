"""Compensation a·bᵀ on down_proj: which blocks, what rank, unchanged at start, baked at the end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from calib_util import BlockCase, block_case, tiny_llama

from abqlab.calib.components import build_component
from abqlab.calib.components.compensation import selected
from abqlab.calib.train import forward
from abqlab.config import QuantConfig

W4 = QuantConfig(name="w4a16", w_bits=4)
DOWN = "mlp.down_proj"


@pytest.mark.parametrize(
    ("n_blocks", "layers", "chosen"),
    [
        (8, [0, 1, 2, -4, -3, -2, -1], {0, 1, 2, 4, 5, 6, 7}),
        (12, [0, 1, 2, -4, -3, -2, -1], {0, 1, 2, 8, 9, 10, 11}),
        (2, [0, 1, 2, -4, -3, -2, -1], {0, 1}),
        (5, [-1], {4}),
        (5, [1, -2], {1, 3}),
        (5, [], set()),
    ],
)
def test_selected_counts_negative_layers_from_the_end(
    n_blocks: int, layers: list[int], chosen: set[int]
) -> None:
    assert {i for i in range(n_blocks) if selected(i, n_blocks, layers)} == chosen


@pytest.fixture
def case() -> BlockCase:
    return block_case(tiny_llama(seed=5), index=1)


@pytest.mark.parametrize(("index", "expected"), [(0, True), (3, False), (4, True), (5, True)])
def test_only_listed_blocks_get_vectors(case: BlockCase, index: int, expected: bool) -> None:
    ctx = case.context(W4, n_blocks=6, index=index)
    component = build_component("compensation", {"layers": [0, -2, -1]})
    params = component.attach(ctx)
    assert bool(params) == expected
    assert bool(ctx.linear(DOWN).weight_transforms) == expected
    others = [m for p, m in ctx.linears().items() if p != DOWN]
    assert all(not m.weight_transforms for m in others)
    if expected:
        left, right = params
        assert left.shape == (ctx.linear(DOWN).out_features, 1)
        assert right.shape == (ctx.linear(DOWN).in_features, 1)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_rank_start_and_bake(case: BlockCase, rank: int) -> None:
    target = case.run(case.float_block)
    ctx = case.context(W4)
    quantized_only = case.run()
    down = ctx.linear(DOWN)
    weight_before = down.weight.detach().clone()
    component = build_component("compensation", {"rank": rank, "layers": [-1]})
    left, right = component.attach(ctx)
    assert torch.count_nonzero(left) == 0
    assert torch.equal(case.run(), quantized_only)  # a = 0: the block is unchanged

    optimizer = torch.optim.AdamW([left, right], lr=1e-2, weight_decay=0.0)
    loss = F.mse_loss(forward(case.block, case.x, case.kwargs), target)
    loss.backward()
    assert left.grad is not None and left.grad.abs().sum() > 0
    optimizer.step()
    low_rank = (left @ right.T).detach()
    assert torch.linalg.matrix_rank(low_rank).item() == rank
    trained = case.run()
    assert not torch.equal(trained, quantized_only)

    state = component.state()
    assert set(state) == {DOWN}
    assert torch.equal(state[DOWN]["a"], left.detach())
    component.bake(ctx)
    for linear in ctx.linears().values():
        linear.bake()
    assert torch.allclose(down.weight, weight_before + low_rank, atol=1e-6)
    assert not down.weight_transforms
    assert torch.allclose(case.run(), trained, atol=1e-5)
