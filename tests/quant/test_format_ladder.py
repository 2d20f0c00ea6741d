"""Per-linear widths under a float format: each width takes its family's member."""

from __future__ import annotations

import pytest

from abqlab.config import QuantConfig
from abqlab.quant.apply import weight_spec
from abqlab.quant.formats import format_at, get_format, ladder_of


@pytest.mark.parametrize(
    ("name", "bits", "expected"),
    [("int", 3, "int"), ("fp8_e4m3", 4, "fp4_e2m1"), ("fp8_e5m2", 8, "fp8_e5m2"),
     ("fp4_e2m1", 6, "fp6_e2m3"), ("mxfp4", 8, "mxfp8"), ("mxfp8", 6, "mxfp6_e2m3")],
)
def test_format_at_each_width(name: str, bits: int, expected: str) -> None:
    assert format_at(name, bits) == expected
    assert expected == "int" or get_format(expected).bits == bits


def test_unknown_names_have_no_ladder() -> None:
    assert ladder_of("fp5") is None and ladder_of("int") is None
    assert ladder_of("nvfp4") == {4: "nvfp4"}


def test_a_width_outside_the_family_is_refused() -> None:
    with pytest.raises(ValueError, match="nvfp4 has no 8-bit member"):
        format_at("nvfp4", 8)
    with pytest.raises(ValueError, match="fp8_e4m3 has no 5-bit member.*widths 4, 6, 8"):
        format_at("fp8_e4m3", 5)


def test_layer_bits_pick_the_format_of_their_width() -> None:
    quant = QuantConfig(w_bits=4, w_group=32, w_sym=True, w_format="mxfp4",
                        layer_bits={"a": 8, "b": 6})
    assert weight_spec(quant, "a").fmt == "mxfp8"
    assert weight_spec(quant, "b").fmt == "mxfp6_e2m3"
    assert weight_spec(quant, "c").fmt == "mxfp4"
