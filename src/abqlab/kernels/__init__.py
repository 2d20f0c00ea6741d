"""Arbitrary-bit quantized GEMM kernels: torch.library ops, CPU reference, quantized Linear.

Importing never needs the compiled library or CUDA; ``available()`` says whether the CUDA
kernels can run. Build them on a GPU machine with ``python csrc/build.py ext``.
"""

from abqlab.kernels import ops, reference
from abqlab.kernels._ext import available
from abqlab.kernels.linear import QuantLinear, pack_weight

__all__ = ["QuantLinear", "available", "ops", "pack_weight", "reference"]
