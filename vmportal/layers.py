"""Channels' in-memory layer, with its expiry sweep bounded in time and its channel_capacity working.

The stock layer scans every channel and group for expired messages on every send and receive: with
N open pages, one event fanned out to them costs N scans of N channels. Sweeping at most once a
second keeps expiry working and makes the fan-out linear (bench/live_latency.py measures it).
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import InMemoryChannelLayer as StockInMemoryChannelLayer


class InMemoryChannelLayer(StockInMemoryChannelLayer):
    sweep_interval = 1.0

    def __init__(self, *args: Any, channel_capacity: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self._next_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        super()._clean_expired()
