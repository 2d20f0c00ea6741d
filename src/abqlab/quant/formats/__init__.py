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


# the member of a float family at each width, for per-linear widths (quant.layer_bits, budgets):
# a linear given other bits than w_format's takes its family's format of that width
LADDERS: dict[str, dict[int, str]] = {
    "minifloat": {4: "fp4_e2m1", 6: "fp6_e2m3", 8: "fp8_e4m3"},
    "mx": {4: "mxfp4", 6: "mxfp6_e2m3", 8: "mxfp8"},
}


def get_format(name: str) -> NumberFormat:
    """The format registered as ``name`` (unknown names: one line with close matches)."""
    return FORMATS.get(name)


def ladder_of(name: str) -> dict[int, str] | None:
    """Width → format of ``name``'s family (None: integers, any width; or no ladder)."""
    family = next((f for f, names in FAMILIES.items() if name in names), None)
    if name == "int" or family is None:  # integers; unknown names are the format check's
        return None
    return LADDERS.get(family, {get_format(name).bits: name})


def format_at(name: str, bits: int) -> str:
    """The format a weight of ``bits`` bits uses when the run's format is ``name``."""
    ladder = ladder_of(name)
    if ladder is None or get_format(name).bits == bits:
        return name
    if bits not in ladder:
        widths = ", ".join(map(str, sorted(ladder)))
        raise ValueError(f"{name} has no {bits}-bit member in its family (widths {widths})")
    return ladder[bits]


__all__ = ["FAMILIES", "FORMATS", "NumberFormat", "get_format"]
