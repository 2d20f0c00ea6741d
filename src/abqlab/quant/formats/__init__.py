"""Number formats behind ``quant.w_format`` / ``a_format`` / ``kv_format``.

One file per family, one registry line per family. A format turns a group's range into a scale
(and zero point), fake-quantizes with it (forward exact, straight-through gradient) and encodes
values as storable codes. ``quant.w_bits`` stays the switch for "quantized or float": a float
format needs the bits it names (4, 6 or 8).
"""

from __future__ import annotations

from abqlab.quant.formats.base import NumberFormat
from abqlab.registry import Registry

FORMATS: Registry[NumberFormat] = Registry("number format")

FAMILIES: dict[str, tuple[str, ...]] = {
    "integer": ("int",),
    "minifloat": ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1"),
    "mx": ("mxfp8", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4"),
    "nvfp4": ("nvfp4",),
}
for _family, _names in FAMILIES.items():  # one line per family: module:NAME for each name
    for _name in _names:
        FORMATS.register(_name, f"abqlab.quant.formats.{_family}:{_name.upper()}")


def get_format(name: str) -> NumberFormat:
    """The format registered as ``name`` (unknown names: one line with close matches)."""
    return FORMATS.get(name)


__all__ = ["FAMILIES", "FORMATS", "NumberFormat", "get_format"]
