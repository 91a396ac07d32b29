"""The summaries the benchmarks print: nearest-rank percentiles and the list benchmark's headroom."""

from __future__ import annotations

import pytest

from bench.list_scale import headroom_text, listed_count, scale_domains
from bench.stats import percentile


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(value) for value in range(20, 0, -1)]  # 20 values, unsorted
    assert percentile(values, 0.95) == 19.0  # 0.95 * 20 is 19.000000000000004 in floats: still rank 19
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 1.0) == 20.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_headroom_keeps_a_slow_servers_figure_readable() -> None:
    assert headroom_text(32.0) == "3.1"
    assert headroom_text(100.0) == "1.0"
    assert headroom_text(4800.0) == "0.021"


def test_the_domains_spread_evenly_and_a_server_without_paging_counts_its_rows() -> None:
    plan = scale_domains(["lab1", "lab2", "lab3"], 10)
    assert [len(domains) for domains in plan.values()] == [4, 3, 3]
    assert len({domain.name for domains in plan.values() for domain in domains}) == 10
    assert listed_count({"count": 10000, "domains": [{}] * 50}) == 10000
    assert listed_count({"domains": [{}] * 3}) == 3
