"""Hadamard constructions (Sylvester, Paley I/II, Kronecker) and the online rotation module."""

from __future__ import annotations

import math

import pytest
import torch

from abqlab.rotation.hadamard import (
    factorization,
    hadamard,
    has_hadamard,
    paley1,
    paley2,
    random_orthogonal,
    sylvester,
)
from abqlab.rotation.online import OnlineRotation, across_heads, fwht, orthonormal_hadamard


def assert_hadamard(h: torch.Tensor) -> None:
    n = h.shape[0]
    assert h.shape == (n, n)
    assert torch.equal(h.abs(), torch.ones_like(h)), "entries must be ±1"
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=h.dtype)), "H Hᵀ must be n I exactly"


@pytest.mark.parametrize("n", [1, 2, 4, 12, 20, 28, 36, 44, 60, 64, 192, 576, 1536])
def test_hadamard_orders(n: int) -> None:
    assert_hadamard(hadamard(n))


@pytest.mark.parametrize(("p", "order"), [(3, 4), (11, 12), (19, 20), (23, 24), (43, 44)])
def test_paley1(p: int, order: int) -> None:
    h = paley1(p)
    assert h.shape[0] == order
    assert_hadamard(h)


@pytest.mark.parametrize(("p", "order"), [(5, 12), (13, 28), (17, 36), (29, 60)])
def test_paley2(p: int, order: int) -> None:
    h = paley2(p)
    assert h.shape[0] == order
    assert_hadamard(h)


def test_paley_rejects_wrong_primes() -> None:
    for bad in (5, 9, 15):
        with pytest.raises(ValueError, match="Paley I"):
            paley1(bad)
    for bad in (7, 9, 21):
        with pytest.raises(ValueError, match="Paley II"):
            paley2(bad)


def test_smollm2_sizes_factor_as_expected() -> None:
    assert factorization(576) == (36, 16)
    assert factorization(1536) == (12, 128)
    assert factorization(64) == (1, 64)
    assert factorization(4096) == (1, 4096)


@pytest.mark.parametrize("n", [3, 9, 100, 172])
def test_orders_without_a_construction(n: int) -> None:
    assert not has_hadamard(n)
    with pytest.raises(ValueError, match=f"order {n}"):
        hadamard(n)


def test_random_orthogonal_is_orthogonal_and_seeded() -> None:
    a = random_orthogonal(50, torch.Generator().manual_seed(3))
    b = random_orthogonal(50, torch.Generator().manual_seed(3))
    c = random_orthogonal(50, torch.Generator().manual_seed(4))
    assert torch.allclose(a @ a.T, torch.eye(50, dtype=a.dtype), atol=1e-12)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_fwht_is_sylvester() -> None:
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    assert torch.allclose(fwht(x), x @ sylvester(32), atol=1e-12)


@pytest.mark.parametrize(("n", "kind"), [(64, "hadamard"), (576, "hadamard"), (1536, "hadamard"),
                                         (9, "hadamard"), (48, "random")])
def test_online_rotation_matches_its_matrix(n: int, kind: str) -> None:
    rotation = orthonormal_hadamard(n, torch.Generator().manual_seed(0), kind)
    m = rotation.matrix()
    assert torch.allclose(m @ m.T, torch.eye(n, dtype=m.dtype), atol=1e-6)
    x = torch.randn(2, 7, n)
    assert torch.allclose(rotation(x).double(), x.double() @ m, atol=1e-5)


def test_randomised_hadamard_is_a_signed_scaled_hadamard() -> None:
    rotation = orthonormal_hadamard(576, torch.Generator().manual_seed(1), "hadamard")
    m = rotation.matrix() * math.sqrt(576)
    assert torch.allclose(m.abs(), torch.ones_like(m), atol=1e-5)  # every entry ±1/√n
    signs = rotation.signs
    assert {float(v) for v in signs.unique()} == {-1.0, 1.0}
    other = orthonormal_hadamard(576, torch.Generator().manual_seed(2), "hadamard")
    assert not torch.equal(signs, other.signs)  # the seed decides the signs


def test_across_heads_keeps_channels_within_heads() -> None:
    rotation = across_heads(4, 16, torch.Generator().manual_seed(0), "hadamard")
    m = rotation.matrix()
    assert torch.allclose(m @ m.T, torch.eye(64, dtype=m.dtype), atol=1e-6)
    blocks = m.view(4, 16, 4, 16)  # [head in, channel in, head out, channel out]
    off_channel = blocks * (1 - torch.eye(16, dtype=m.dtype))[None, :, None, :]
    assert off_channel.abs().max() == 0  # channel c of any head only feeds channel c


def test_op_count_of_smollm2_down_proj_rotation() -> None:
    rotation = orthonormal_hadamard(1536, torch.Generator().manual_seed(0), "hadamard")
    counts = rotation.mults_per_row()
    assert counts == {"sign_mults": 1536, "fwht_adds": 1536 * 7, "dense_macs": 12 * 12 * 128}
    assert sum(counts.values()) < 0.05 * 1536 * 576  # vs down_proj's 1536 · 576 MACs per token


def test_online_rotation_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="signs"):
        OnlineRotation(torch.ones(10), torch.eye(3), 4, True)
    with pytest.raises(ValueError, match="power of two"):
        OnlineRotation(torch.ones(12), torch.eye(1), 12, True)
