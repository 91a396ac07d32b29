"""Usage history: each VM's rates (and its host's) kept at three resolutions, averages and maxima.

Every sample's rates (domains.virt.usage.rates) are a point of the finest resolution; the coarser ones
are made as the collector goes, in memory: each VM has an open bucket per resolution, and a bucket is
written once, when the first rate past its end arrives. So the database takes one row per VM per
finished bucket and never re-reads what it keeps to downsample it. A collector that restarts loses its
open buckets: a gap, never a wrong figure.

What is kept, per VM and per host (RESOLUTIONS): 10 s points for an hour (360), 1 min for a day (1,440),
30 min for a month (1,440): at most 3,240 rows of models.UsagePoint. `prune` deletes what is older, and
the collecting process calls it (domains.supervisor, manage.py collectstats).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any
from uuid import UUID

from django.db import connection

from .models import UsagePoint
from .virt.usage import DomainUsage


@dataclass(frozen=True)
class Resolution:
    seconds: int
    kept_seconds: int

    @property
    def points(self) -> int:
        return self.kept_seconds // self.seconds


RESOLUTIONS = (Resolution(10, 3600), Resolution(60, 86400), Resolution(1800, 30 * 86400))


def resolution_for(span_seconds: int) -> int:
    """The finest resolution whose points reach back `span_seconds`."""
    return next(resolution.seconds for resolution in RESOLUTIONS if resolution.kept_seconds >= span_seconds)


HOST = ""  # the uuid under which a host's own figures are kept

# The figures a point keeps, each as an average and a maximum over its bucket.
FIGURES = tuple(f.name for f in fields(DomainUsage) if f.name not in ("uuid", "memory_source"))
# Kept to a hundredth where a fraction matters (percentages, a few requests or packets a second), whole
# otherwise (bytes a second, KiB): SQLite writes a whole REAL as an integer, in fewer bytes.
_FRACTIONAL = frozenset({"cpu_percent", "host_cpu_percent", "disk_read_iops", "disk_write_iops",
                         "net_receive_packets_per_second", "net_transmit_packets_per_second"})


def _kept(name: str, value: float) -> float:
    return round(value, 2) if name in _FRACTIONAL else float(round(value))


@dataclass(frozen=True)
class Point:
    """One VM's (or host's) figures over one bucket: [start, start + resolution)."""

    host_id: int
    uuid: str  # HOST for the host's own
    resolution: int
    start: int  # epoch seconds, a multiple of the resolution
    samples: int
    average: dict[str, float]
    maximum: dict[str, float]


@dataclass
class _Bucket:
    start: int
    samples: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)

    def add(self, usage: DomainUsage) -> None:
        self.samples += 1
        for name in FIGURES:
            value = float(getattr(usage, name))
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.maxima[name] = max(self.maxima.get(name, value), value)

    def point(self, host_id: int, uuid: str, resolution: int) -> Point:
        return Point(host_id, uuid, resolution, self.start, self.samples,
                     {name: total / self.samples for name, total in self.sums.items()}, dict(self.maxima))


class Downsampler:
    """The open buckets of every VM a collector follows; `add` returns the points that closed."""

    def __init__(self, resolutions: tuple[Resolution, ...] = RESOLUTIONS) -> None:
        self.resolutions = resolutions
        self._open: dict[tuple[int, str, int], _Bucket] = {}  # (host, uuid, resolution seconds): its open bucket

    def add(self, at: float, host_id: int, usage: DomainUsage) -> list[Point]:
        """A rate measured at `at` (epoch seconds): added to each resolution's bucket."""
        closed = []
        for resolution in self.resolutions:
            start = int(at) // resolution.seconds * resolution.seconds
            key = (host_id, usage.uuid, resolution.seconds)
            bucket = self._open.get(key)
            if bucket is not None and bucket.start != start:
                closed.append(bucket.point(host_id, usage.uuid, resolution.seconds))
                bucket = None
            if bucket is None:
                bucket = self._open[key] = _Bucket(start)
            bucket.add(usage)
        return closed

    def forget(self, host_id: int, uuid: str) -> list[Point]:
        """The VM is gone (or no longer followed here): its open buckets, closed as they are."""
        return [self._open.pop((host_id, uuid, resolution.seconds)).point(host_id, uuid, resolution.seconds)
                for resolution in self.resolutions if (host_id, uuid, resolution.seconds) in self._open]

    def following(self, host_id: int) -> set[str]:
        return {uuid for (host, uuid, _seconds) in self._open if host == host_id}


def oldest_kept(resolution: Resolution, now: float) -> int:
    """Points of this resolution that start before this (epoch seconds) are pruned."""
    return int(now) - resolution.kept_seconds


def save(points: Iterable[Point]) -> int:
    """The closed points, in one statement (a bucket written twice, after a restart, keeps its first)."""
    return insert(rows(points))


Row = tuple[Any, ...]  # a UsagePoint's columns (_COLUMNS), its figures rounded as kept


def rows(points: Iterable[Point]) -> list[Row]:
    """The points as `insert` writes them: made by the sampling process, written by the supervisor's."""
    uuid_field = UsagePoint._meta.get_field("domain_uuid")
    return [(point.host_id, uuid_field.get_db_prep_value(UUID(point.uuid) if point.uuid else None, connection),
             point.resolution, point.start, point.samples,
             *(_kept(name, point.average[name]) for name in FIGURES),
             *(_kept(name, point.maximum[name]) for name in FIGURES))
            for point in points]


def insert(rows: list[Row]) -> int:
    """Written with one executemany rather than bulk_create: Django's insert compiler, 27 columns a row, took
    a fifth of a web process's time when it collected 20 hosts of 500 VMs every 10 s (bench/list_scale.py)."""
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(_INSERT, rows)
    return len(rows)


_COLUMNS = ("host_id", "domain_uuid", "resolution", "start", "samples", *FIGURES, *(f"{name}_max" for name in FIGURES))
_INSERT = (f"INSERT INTO {UsagePoint._meta.db_table} ({', '.join(_COLUMNS)}) "  # noqa: S608 (the model's own names)
           f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT DO NOTHING")


def merge(points: Iterable[Point]) -> int:
    """The points, each combined with the one already kept for its bucket (samples-weighted averages, the
    larger maxima): for a collector that runs now and then (collectstats --once), whose every point is a
    bucket's part."""
    points = list(points)
    keys = {(point.host_id, point.resolution, point.start) for point in points}
    kept: dict[tuple[int, str, int, int], UsagePoint] = {}
    for host_id, resolution, start in keys:
        for stored in UsagePoint.objects.filter(host_id=host_id, resolution=resolution, start=start):
            kept[(host_id, str(stored.domain_uuid) if stored.domain_uuid else HOST, resolution, start)] = stored
    fresh: list[Point] = []
    combined: list[UsagePoint] = []
    for point in points:
        row = kept.get((point.host_id, point.uuid, point.resolution, point.start))
        if row is None:
            fresh.append(point)
            continue
        total = row.samples + point.samples
        for name in FIGURES:
            average = (getattr(row, name) * row.samples + point.average[name] * point.samples) / total
            setattr(row, name, _kept(name, average))
            setattr(row, f"{name}_max", _kept(name, max(getattr(row, f"{name}_max"), point.maximum[name])))
        row.samples = total
        combined.append(row)
    UsagePoint.objects.bulk_update(combined, ["samples", *FIGURES, *(f"{name}_max" for name in FIGURES)])
    return save(fresh) + len(combined)


def prune(now: float) -> int:
    """Deletes every point older than its resolution keeps; the number deleted."""
    return sum(UsagePoint.objects.filter(resolution=resolution.seconds, start__lt=oldest_kept(resolution, now))
               .delete()[0] for resolution in RESOLUTIONS)
