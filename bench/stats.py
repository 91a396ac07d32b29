"""Summaries the benchmarks share."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `fraction` of them at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))  # 0.95 * 20 is 19.000000000000004 in floats
    return ordered[min(len(ordered), max(1, rank)) - 1]
