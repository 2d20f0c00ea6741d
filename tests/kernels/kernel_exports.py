"""A random calibrated-linear export (the schema of abqlab.quant.export) for kernel tests.

Plain module (not a conftest): the GPU tests run with --noconftest on a machine without hydra.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from abqlab.kernels import _ext


def cuda_extension_or_skip() -> Any:
    """The loaded CUDA extension; skips the calling test module without a GPU or the build."""
    if not (torch.cuda.is_available() and _ext.load() is not None):
        pytest.skip("needs a CUDA GPU and the built extension (python csrc/build.py ext)",
                    allow_module_level=True)
    return _ext.load()


def random_export(
    n: int, k: int, w_bits: int, a_bits: int, group: int, levels: int | None = None, *,
    a_sym: bool = False, bias: bool = True, gen: torch.Generator | None = None,
) -> dict:
    """Codes, grids and bias drawn from ``gen`` (seed 0 when not given)."""
    gen = gen or torch.Generator().manual_seed(0)
    levels = levels or 2**w_bits
    groups = -(-k // group)
    return {
        "qweight": torch.randint(0, levels, (n, k), generator=gen, dtype=torch.uint8),
        "scale": torch.rand(n, groups, generator=gen) / levels + 1e-3,
        "zero": torch.randint(0, levels, (n, groups), generator=gen).float(),
        "group_size": group, "w_bits": w_bits, "w_levels": levels, "a_bits": a_bits,
        "a_sym": a_sym, "bias": torch.randn(n, generator=gen) if bias else None,
    }
