"""Usage collection, the Django side: each host's samples into rates, history and its latest figures.

The sampling process (domains.sampling, the supervisor's child) samples every host (domains.virt.usage: one
bulk call per host per interval) and hands each sample to its Collector (`collect`: arithmetic only),
whose result it sends its supervisor as `Kept`; the supervisor keeps it (`keep`: the finished history
points and the host's latest sample, models.HostUsage) and pushes the rates to the host's pages
(live.usage_news). `manage.py collectstats
--once` does the same for one sample of every host, taking its rates from the sample stored before.

models.HostUsage holds the latest sample as plain data (`counters_to_plain`): the counters /metrics
exports, and the rates of the last interval, by UUID, with the host's own under history.HOST; each VM's
with its name and its CPU % over the last TREND_SAMPLES samples (the list's trend). `latest` reads them
for the list and the host page, parsed once per sample in each process.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from . import history
from .models import HostUsage
from .virt.usage import DomainCounters, DomainUsage, HostCounters, host_rates, rates

_DOMAIN_FIELDS = tuple(f.name for f in dataclasses.fields(DomainCounters) if f.name != "uuid")
_HOST_FIELDS = ("taken_at", "cpus", "cpu_busy_ns", "memory_total_kib", "memory_free_kib")
TREND_SAMPLES = 30  # the CPU % a list row's trend shows: the last five minutes at the default interval


@dataclass(frozen=True)
class Collected:
    """What one sample of one host gave."""

    host_id: int
    counters: HostCounters
    domains: list[DomainUsage]  # each VM's rates over the interval (none after a gap)
    host: DomainUsage | None  # the host's own
    points: list[history.Point]  # history points the sample closed
    trends: dict[str, list[float]]  # each VM's CPU % over its latest samples, oldest first


class Collector:
    """Rates from each host's previous sample, and the history buckets they fill (one per sampling process,
    used by its collecting thread alone)."""

    def __init__(self) -> None:
        self._previous: dict[int, HostCounters] = {}
        self._downsampler = history.Downsampler()
        self._trends: dict[tuple[int, str], deque[float]] = {}

    def collect(self, host_id: int, counters: HostCounters, *, previous: HostCounters | None = None) -> Collected:
        """`previous`: the sample to take rates from when this collector has none of the host (collectstats)."""
        previous = self._previous.get(host_id, previous)
        self._previous[host_id] = counters
        domains = rates(previous, counters) if previous is not None else []
        host = host_rates(previous, counters, domains) if previous is not None else None
        points = [point for usage in [*domains, *([host] if host else [])]
                  for point in self._downsampler.add(counters.taken_at, host_id, usage)]
        present = {domain.uuid for domain in counters.domains} | {history.HOST}
        for uuid in self._downsampler.following(host_id) - present:  # gone from the host: its buckets close
            points += self._downsampler.forget(host_id, uuid)
            self._trends.pop((host_id, uuid), None)
        trends = {}
        for domain in domains:
            trend = self._trends.setdefault((host_id, domain.uuid), deque(maxlen=TREND_SAMPLES))
            trend.append(round(domain.cpu_percent, 1))
            trends[domain.uuid] = list(trend)
        return Collected(host_id, counters, domains, host, points, trends)

    def forget(self, host_id: int) -> list[history.Point]:
        """No longer sampled here: the host's open buckets, closed as they are."""
        self._previous.pop(host_id, None)
        self._trends = {key: trend for key, trend in self._trends.items() if key[0] != host_id}
        return [point for uuid in self._downsampler.following(host_id)
                for point in self._downsampler.forget(host_id, uuid)]


@dataclass(frozen=True)
class Kept:
    """What the supervisor keeps of one sample, made where it was collected (the sampling process, so that
    the web process's interpreter does none of the arithmetic): the history rows it closed, and the host's
    latest sample (models.HostUsage's fields; None when the host is no longer sampled: its last buckets)."""

    host_id: int
    rows: list[history.Row]
    latest: dict[str, Any] | None


def to_keep(collected: Collected) -> Kept:
    return Kept(collected.host_id, history.rows(collected.points), latest_row(collected))


def keep(kept: Kept) -> None:
    """The closed points and the host's latest sample, in one transaction."""
    with transaction.atomic():
        history.insert(kept.rows)
        if kept.latest is not None:
            HostUsage.objects.update_or_create(host_id=kept.host_id, defaults=kept.latest)


def latest_row(collected: Collected) -> dict[str, Any]:
    """models.HostUsage's fields for the sample."""
    return {"taken_at": collected.counters.taken_at, "counters": counters_to_plain(collected.counters),
            "rates": rates_to_plain(collected)}


def stored_counters(host_id: int) -> HostCounters | None:
    """The host's latest stored sample (another process's, or an earlier run's), on this process's clock."""
    latest = HostUsage.objects.filter(host_id=host_id).first()
    return counters_from_plain(latest.counters) if latest is not None else None


def counters_to_plain(counters: HostCounters) -> dict[str, Any]:
    plain: dict[str, Any] = {name: getattr(counters, name) for name in _HOST_FIELDS}
    plain["domains"] = {domain.uuid: {name: getattr(domain, name) for name in _DOMAIN_FIELDS}
                        for domain in counters.domains}
    return plain


def counters_from_plain(plain: dict[str, Any]) -> HostCounters:
    # Rates are taken on the monotonic clock; a sample from elsewhere is placed on it by its age.
    monotonic = time.monotonic() - (time.time() - plain["taken_at"])
    domains = tuple(DomainCounters(uuid=uuid, **values) for uuid, values in plain["domains"].items())
    return HostCounters(monotonic=monotonic, domains=domains, **{name: plain[name] for name in _HOST_FIELDS})


def usage_to_plain(usage: DomainUsage) -> dict[str, Any]:
    return {name: getattr(usage, name) for name in (*history.FIGURES, "memory_source")}


def rates_to_plain(collected: Collected) -> dict[str, dict[str, Any]]:
    names = {domain.uuid: domain.name for domain in collected.counters.domains}
    plain = {usage.uuid: usage_to_plain(usage) | {"name": names[usage.uuid], "trend": collected.trends[usage.uuid]}
             for usage in collected.domains}
    if collected.host is not None:
        plain[history.HOST] = usage_to_plain(collected.host)
    return plain


TOP_KEPT = 10  # a host's VMs kept in order of CPU and of memory, for the top consumers of every VM


@dataclass(frozen=True)
class LatestUsage:
    """A host's latest sample as the list and the host page read it: the host's own rates (None before two
    samples) and each VM's, with its name and trend, by UUID; and the UUIDs of its TOP_KEPT VMs taking the
    most of the host's CPUs and using the most memory, most first (so that the top consumers of thousands
    of VMs cost a few per host, not a look at each VM)."""

    taken_at: float
    host: dict[str, Any] | None
    domains: dict[str, dict[str, Any]]
    top_cpu: tuple[str, ...]
    top_memory: tuple[str, ...]

    @classmethod
    def parsed(cls, taken_at: float, rates: dict[str, dict[str, Any]]) -> LatestUsage:
        host = rates.pop(history.HOST, None)
        return cls(taken_at, host, rates,
                   tuple(heapq.nlargest(TOP_KEPT, rates, key=lambda uuid: rates[uuid]["host_cpu_percent"])),
                   tuple(heapq.nlargest(TOP_KEPT, rates, key=lambda uuid: rates[uuid]["memory_used_kib"])))


class _LatestMirror:
    """This process's parsed copy of each host's latest sample, read again when a newer one is stored."""

    def __init__(self) -> None:
        self._hosts: dict[int, LatestUsage] = {}
        self._lock = threading.Lock()

    def read(self, host_ids: Iterable[int]) -> dict[int, LatestUsage]:
        taken = dict(HostUsage.objects.filter(host_id__in=list(host_ids)).values_list("host_id", "taken_at"))
        with self._lock:
            found = {host_id: self._hosts[host_id] for host_id, taken_at in taken.items()
                     if host_id in self._hosts and self._hosts[host_id].taken_at == taken_at}
        stale = [host_id for host_id in taken if host_id not in found]
        for host_id, taken_at, by_uuid in HostUsage.objects.filter(host_id__in=stale).values_list(
                "host_id", "taken_at", "rates"):
            found[host_id] = LatestUsage.parsed(taken_at, by_uuid)
        with self._lock:
            self._hosts.update((host_id, found[host_id]) for host_id in stale if host_id in found)
        return found


_latest = _LatestMirror()


def latest(host_ids: Iterable[int]) -> dict[int, LatestUsage]:
    """The hosts' latest samples (hosts never sampled left out)."""
    return _latest.read(host_ids)
