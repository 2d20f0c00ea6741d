"""Quantization primitives: specs, quantizers, STE, fake-quant modules, model conversion."""

from abqlab.quant.spec import FP_BITS, PER_CHANNEL, PER_TENSOR, QuantSpec

__all__ = ["FP_BITS", "PER_CHANNEL", "PER_TENSOR", "QuantSpec"]
