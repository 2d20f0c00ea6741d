"""Integration with abqlab.quant: a FakeQuantLinear's export, run by QuantLinear, gives the
same output as the fake-quantized layer (same per-token activation quantizer definition)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

fake_linear = pytest.importorskip("abqlab.quant.fake_linear")
export = pytest.importorskip("abqlab.quant.export")
spec = pytest.importorskip("abqlab.quant.spec")

from abqlab.kernels.linear import QuantLinear  # noqa: E402

Q = spec.QuantSpec
CASES = {
    "W4A8": (Q(bits=4), Q(bits=8)),
    "W2*A8": (Q(bits=2, bit_balance=True), Q(bits=8)),
    "W4A4-sym-act": (Q(bits=4), Q(bits=4, sym=True)),
    "W6A6": (Q(bits=6), Q(bits=6)),
    "W4A16-g128": (Q(bits=4, group=128), None),
    "W3A16": (Q(bits=3), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_export_runs_like_fake_quant(case: str) -> None:
    torch.manual_seed(0)
    w_spec, a_spec = CASES[case]
    lin = nn.Linear(256, 48)
    layer = fake_linear.FakeQuantLinear(lin, w_spec, a_spec, name=case)
    x = torch.randn(3, 5, 256)
    with torch.no_grad():
        y_fake = layer(x)
        e = export.export_linear(layer)
        y = QuantLinear.from_export(e)(x)
    torch.testing.assert_close(y, y_fake, rtol=1e-4, atol=1e-4)
