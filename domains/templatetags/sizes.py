"""`{{ value|binary_size:"KiB" }}`: an amount of memory or storage in the binary unit it reads best in.
`{{ value|mebibytes }}`: bytes in MiB always, where figures are compared with a limit set in MiB (migrations).

Worded as the usage charts' legends word it (static/vmportal/usage.js `bytes`): one decimal, dropped when it
is zero, none in bytes or from 100 up: "512 MiB", "1.5 GiB", "931 GiB".
"""

from __future__ import annotations

from django import template

register = template.Library()

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@register.filter
def binary_size(value: float | None, unit: str = "B") -> str:
    """`value`, counted in `unit` (one of UNITS), as a size; "–" for None."""
    if value is None:
        return "–"
    index = UNITS.index(unit)
    scaled = float(value)
    while abs(scaled) >= 1024 and index < len(UNITS) - 1:
        scaled /= 1024
        index += 1
    shown = f"{scaled:.0f}" if index == 0 or abs(scaled) >= 100 else f"{scaled:.1f}".removesuffix(".0")
    return f"{shown} {UNITS[index]}"


@register.filter
def mebibytes(value: float | None) -> str:
    """`value` bytes in MiB: a decimal below 100 MiB, thousands grouped above; "–" for None."""
    if value is None:
        return "–"
    scaled = float(value) / 1024**2
    shown = f"{scaled:,.0f}" if abs(scaled) >= 100 else f"{scaled:.1f}".removesuffix(".0")
    return f"{shown} MiB"
