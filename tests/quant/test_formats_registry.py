"""Every registered format: specs, fake quant ≡ stored codes, FakeQuantLinear export round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from abqlab.quant.export import export_linear
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.formats import FAMILIES, FORMATS, get_format
from abqlab.quant.quantizer import dequantize_codes, fake_quant, quantize_codes
from abqlab.quant.spec import QuantSpec
from abqlab.registry import RegistryError

NAMES = [name for names in FAMILIES.values() for name in names]


def spec_for(name: str, group: int = 32) -> QuantSpec:
    fmt = get_format(name)
    if not fmt.is_float:
        return QuantSpec(4, False, group)
    return QuantSpec(fmt.bits, True, fmt.block or group, fmt=name)


def test_registry_lists_every_family_member_once() -> None:
    assert sorted(NAMES) == FORMATS.names()
    assert len(set(NAMES)) == len(NAMES) == 12
    with pytest.raises(RegistryError, match="did you mean mxfp4"):
        get_format("mxpf4")


@pytest.mark.parametrize("name", NAMES)
def test_codes_decode_to_the_fake_quantized_values(name: str) -> None:
    gen = torch.Generator().manual_seed(len(name))
    x = torch.randn(6, 96, generator=gen) * torch.exp(torch.randn(6, 1, generator=gen))
    spec = spec_for(name)
    codes, scale, zero = quantize_codes(x, spec)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert int(codes.max()) < 2**spec.bits
    back = dequantize_codes(codes, scale, zero, spec.group, name)
    assert torch.equal(back, fake_quant(x, spec))


@pytest.mark.parametrize("name", NAMES)
def test_fake_linear_exports_what_it_computes(name: str) -> None:
    torch.manual_seed(0)
    layer = FakeQuantLinear(nn.Linear(64, 24), spec_for(name, 16), None, "t")
    export = export_linear(layer)
    assert export["w_format"] == name and export["lorc"] is None
    weight = dequantize_codes(export["qweight"], export["scale"], export["zero"],
                              export["group_size"], name)
    assert torch.equal(weight, layer.quantized_weight(layer.weight).detach())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 4, "fmt": "fp8_e4m3", "sym": True}, "fp8_e4m3 has 8 bits"),
        ({"bits": 4, "fmt": "fp4_e2m1"}, "sign-magnitude"),
        ({"bits": 4, "fmt": "mxfp4", "sym": True, "group": 64}, "whole blocks of 32"),
        ({"bits": 4, "fmt": "nvfp4", "sym": True, "group": 16, "scale_rule": "m1"},
         "fixed by the format"),
        ({"bits": 4, "fmt": "fp5"}, "unknown number format 'fp5'"),
    ],
)
def test_bad_specs_fail_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        QuantSpec(**kwargs)
    assert "\n" not in str(info.value)
