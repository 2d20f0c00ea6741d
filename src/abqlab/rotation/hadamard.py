"""Hadamard matrices of many orders, built here: Sylvester (2^k), Paley I (p + 1 for a prime
p ≡ 3 mod 4: 4, 8, 12, 20, 24, 32, 44, ...), Paley II (2(p + 1) for a prime p ≡ 1 mod 4: 12, 28,
36, 60, ...) and Kronecker products H_m ⊗ H_{2^k}. So SmolLM2's 576 = 36·16 and 1536 = 12·128
have Hadamard matrices; sizes with none known here fall back to a random orthogonal matrix.

Every matrix is returned with entries ±1 (H Hᵀ = n I); ``orthonormal`` helpers divide by √n.
"""

from __future__ import annotations

import functools

import torch


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def legendre(a: int, p: int) -> int:
    """χ(a) for an odd prime p: 0, 1 (a quadratic residue) or −1."""
    a %= p
    if a == 0:
        return 0
    return 1 if pow(a, (p - 1) // 2, p) == 1 else -1


def jacobsthal(p: int) -> torch.Tensor:
    """Q[i, j] = χ(j − i) over GF(p)."""
    chi = torch.tensor([legendre(a, p) for a in range(p)], dtype=torch.float64)
    index = (torch.arange(p)[None, :] - torch.arange(p)[:, None]) % p
    return chi[index]


def conference_core(p: int, symmetric: bool) -> torch.Tensor:
    """[[0, 1ᵀ], [±1, Q]] of order p + 1 (symmetric for p ≡ 1 mod 4, skew for p ≡ 3 mod 4)."""
    c = torch.zeros(p + 1, p + 1, dtype=torch.float64)
    c[0, 1:] = 1.0
    c[1:, 0] = 1.0 if symmetric else -1.0
    c[1:, 1:] = jacobsthal(p)
    return c


def paley1(p: int) -> torch.Tensor:
    """Order p + 1 for a prime p ≡ 3 (mod 4): H = I + C with C skew-symmetric."""
    if not (is_prime(p) and p % 4 == 3):
        raise ValueError(f"Paley I needs a prime p ≡ 3 mod 4, got {p}")
    return torch.eye(p + 1, dtype=torch.float64) + conference_core(p, symmetric=False)


def paley2(p: int) -> torch.Tensor:
    """Order 2(p + 1) for a prime p ≡ 1 (mod 4): C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]."""
    if not (is_prime(p) and p % 4 == 1):
        raise ValueError(f"Paley II needs a prime p ≡ 1 mod 4, got {p}")
    c = conference_core(p, symmetric=True)
    a = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    return torch.kron(c, a) + torch.kron(torch.eye(p + 1, dtype=torch.float64), b)


def sylvester(n: int) -> torch.Tensor:
    """Order 2^k: H_{2m} = [[H_m, H_m], [H_m, −H_m]]."""
    if not is_power_of_two(n):
        raise ValueError(f"Sylvester needs a power of two, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@functools.cache
def base_orders(limit: int) -> dict[int, tuple[str, int]]:
    """Non-power-of-two orders ≤ ``limit`` with a Paley construction: order → (kind, p)."""
    orders: dict[int, tuple[str, int]] = {}
    for p in range(3, limit):
        if not is_prime(p):
            continue
        if p % 4 == 3 and p + 1 <= limit and not is_power_of_two(p + 1):
            orders.setdefault(p + 1, ("paley1", p))
        if p % 4 == 1 and 2 * (p + 1) <= limit:
            orders.setdefault(2 * (p + 1), ("paley2", p))
    return orders


def factorization(n: int) -> tuple[int, int] | None:
    """(m, 2^k) with n = m · 2^k and a Hadamard matrix of order m known here (m = 1: pure
    Sylvester); the smallest such m, so the dense factor is as cheap as possible. None: none."""
    if is_power_of_two(n):
        return 1, n
    orders = base_orders(n)
    for m in sorted(orders):
        if n % m == 0 and is_power_of_two(n // m):
            return m, n // m
    return None


def small_hadamard(m: int) -> torch.Tensor:
    """The ±1 Hadamard matrix of a base order (1, a power of two, or a Paley order)."""
    if is_power_of_two(m):
        return sylvester(m)
    kind, p = base_orders(m)[m]
    return paley1(p) if kind == "paley1" else paley2(p)


def hadamard(n: int) -> torch.Tensor:
    """A ±1 Hadamard matrix of order n (H_m ⊗ H_{2^k}); ValueError if none is known here."""
    split = factorization(n)
    if split is None:
        raise ValueError(f"no Hadamard construction of order {n} here (need m · 2^k with m a "
                         "Paley order p + 1 or 2(p + 1), p prime)")
    m, power = split
    return torch.kron(small_hadamard(m), sylvester(power))


def has_hadamard(n: int) -> bool:
    return factorization(n) is not None


def random_signs(n: int, generator: torch.Generator) -> torch.Tensor:
    """n independent ±1 values (float64)."""
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """Haar-random orthogonal matrix (float64): QR of a Gaussian, signs fixed by R's diagonal."""
    gaussian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))[None, :]
