"""Usage collection end to end on test:///default: samples into rates, history rows, the host's latest
sample, pruning, `collectstats --once`, the supervisor's sampling and the VM page's pushed figures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command

from accounts.models import User
from domains import history, live, metrics, usage
from domains.models import Host, HostUsage, UsagePoint
from domains.supervisor import Supervisor
from domains.virt.usage import DomainCounters, HostCounters, sample_host
from tests.conftest import TEST_DOMAIN_UUID
from tests.support.live_sockets import signed_in_socket

OTHER_UUID = "99999999-2222-3333-4444-555555555555"


def counters(at: float, cpu_ns: int, *, busy_ns: int = 0, uuids: tuple[str, ...] = (TEST_DOMAIN_UUID,),
             read: int = 0) -> HostCounters:
    domains = tuple(DomainCounters(uuid=uuid, name=f"vm-{n}", state=1, vcpus=2, cpu_ns=cpu_ns, memory_max_kib=2048,
                                   memory_used_kib=1024, memory_source="guest", disk_read_bytes=read,
                                   disk_write_bytes=0, disk_read_requests=0, disk_write_requests=0,
                                   net_receive_bytes=0, net_transmit_bytes=0, net_receive_packets=0,
                                   net_transmit_packets=0)
                    for n, uuid in enumerate(uuids))
    return HostCounters(monotonic=at, taken_at=1_800_000_000 + at, cpus=4, cpu_busy_ns=busy_ns,
                        memory_total_kib=8192, memory_free_kib=4096, domains=domains)


def test_the_first_sample_gives_no_rates_and_the_second_gives_the_vms_and_the_host_s() -> None:
    collector = usage.Collector()
    first = collector.collect(1, counters(0, 0))
    assert (first.domains, first.host, first.points) == ([], None, [])
    second = collector.collect(1, counters(10, 10_000_000_000, busy_ns=20_000_000_000, read=1_000_000))
    [domain] = second.domains
    assert domain.cpu_percent == pytest.approx(50.0)  # 1 s of CPU a second, of two vCPUs
    assert domain.disk_read_bytes_per_second == pytest.approx(100_000)
    assert second.host is not None
    assert second.host.cpu_percent == pytest.approx(50.0)  # 2 s busy a second of four CPUs
    assert (second.host.memory_used_kib, second.host.memory_source) == (4096, "host")
    assert second.host.disk_read_bytes_per_second == pytest.approx(100_000)  # its VMs' summed


def test_a_vm_that_leaves_the_host_closes_its_buckets_and_a_forgotten_host_closes_all() -> None:
    collector = usage.Collector()
    both = (TEST_DOMAIN_UUID, OTHER_UUID)
    collector.collect(1, counters(0, 0, uuids=both))
    collector.collect(1, counters(10, 1, uuids=both))
    left = collector.collect(1, counters(20, 2))
    assert {point.uuid for point in left.points} >= {OTHER_UUID}
    assert {point.resolution for point in left.points if point.uuid == OTHER_UUID} == {10, 60, 1800}
    closed = collector.forget(1)
    assert {point.uuid for point in closed} == {TEST_DOMAIN_UUID, history.HOST}
    assert collector.collect(1, counters(30, 3)).domains == []  # forgotten: a gap, not a rate across it


@pytest.mark.django_db
def test_a_sample_is_kept_as_the_host_s_latest_and_its_closed_points_as_rows(embedded_host: Host) -> None:
    collector = usage.Collector()
    start = 1_800_000_000 // 1800 * 1800 - 1_800_000_000  # a bucket boundary of every resolution
    for step in range(8):
        collected = collector.collect(embedded_host.pk, counters(start + step * 10, step * 5_000_000_000))
        usage.keep(usage.to_keep(collected))
    latest = HostUsage.objects.get(host=embedded_host)
    assert latest.taken_at == 1_800_000_000 + start + 70
    assert latest.rates[TEST_DOMAIN_UUID]["cpu_percent"] == pytest.approx(25.0)
    assert latest.rates[history.HOST]["memory_used_kib"] == 4096
    again = usage.counters_from_plain(latest.counters)
    assert dataclasses.replace(again, monotonic=0) == dataclasses.replace(
        counters(start + 70, 35_000_000_000), monotonic=0)
    vm_points = UsagePoint.objects.filter(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID)
    assert vm_points.filter(resolution=10).count() == 6  # the seventh rate's bucket is still open
    [minute] = vm_points.filter(resolution=60)
    assert (minute.samples, minute.cpu_percent, minute.cpu_percent_max) == (5, pytest.approx(25.0), 25.0)  # +10..+50 s
    assert UsagePoint.objects.filter(host=embedded_host, domain_uuid=None, resolution=10).count() == 6


@pytest.mark.django_db
def test_points_older_than_their_resolution_keeps_are_pruned(embedded_host: Host) -> None:
    now = 1_800_000_000.0
    for resolution in history.RESOLUTIONS:
        kept, old = (history.Point(embedded_host.pk, TEST_DOMAIN_UUID, resolution.seconds, start, 1,
                                   dict.fromkeys(history.FIGURES, 1.0), dict.fromkeys(history.FIGURES, 1.0))
                     for start in (history.oldest_kept(resolution, now), history.oldest_kept(resolution, now) - 1))
        history.save([kept, old])
    assert history.prune(now) == 3
    assert sorted(UsagePoint.objects.values_list("resolution", flat=True)) == [10, 60, 1800]


@pytest.mark.django_db
def test_merged_points_combine_with_the_kept_one_of_their_bucket(embedded_host: Host) -> None:
    def point(samples: int, cpu: float) -> history.Point:
        return history.Point(embedded_host.pk, TEST_DOMAIN_UUID, 1800, 1_800_000_000, samples,
                             dict.fromkeys(history.FIGURES, cpu), dict.fromkeys(history.FIGURES, cpu * 2))

    history.merge([point(1, 10.0)])
    history.merge([point(3, 30.0)])
    [row] = UsagePoint.objects.all()
    assert (row.samples, row.cpu_percent, row.cpu_percent_max) == (4, pytest.approx(25.0), 60.0)


@pytest.mark.django_db
def test_collectstats_once_keeps_a_sample_and_rates_from_the_one_stored_before(embedded_host: Host) -> None:
    out = io.StringIO()
    call_command("collectstats", "--once", stdout=out)
    assert f"{embedded_host.name}: " in out.getvalue() and "0 with rates" in out.getvalue()
    first = HostUsage.objects.get(host=embedded_host)
    assert TEST_DOMAIN_UUID in first.counters["domains"]
    out = io.StringIO()
    call_command("collectstats", "--once", stdout=out)
    assert "1 with rates" in out.getvalue()
    latest = HostUsage.objects.get(host=embedded_host)
    assert latest.taken_at > first.taken_at
    assert TEST_DOMAIN_UUID in latest.rates
    assert UsagePoint.objects.filter(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, resolution=10).exists()


def test_a_sample_of_test_default_reads_every_vm_at_once() -> None:
    sample = sample_host("test:///default")
    [domain] = sample.domains
    assert (domain.uuid, domain.name, domain.state) == (TEST_DOMAIN_UUID, "test", 1)  # the test driver's stats
    # give the state alone: the other groups are zero, and its memory is the allocation, labelled so
    assert (domain.cpu_ns, domain.memory_source) == (0, "allocation")
    assert sample.cpus > 0 and sample.memory_total_kib > 0


@contextlib.asynccontextmanager
async def sampled_by_a_supervisor(host: Host) -> AsyncIterator[Callable[[float], Awaitable[dict[str, Any]]]]:
    """A supervisor sampling every 0.2 s, for the block; yields how to wait for the next usage pushed to `host`'s
    pages (its child, a Django process, takes seconds to start on a busy machine)."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.usage_group(host.pk), channel)
    supervisor = Supervisor(usage_interval=0.2)
    await supervisor.start()
    try:
        yield lambda timeout: asyncio.wait_for(layer.receive(channel), timeout)
    finally:
        await supervisor.stop()


@pytest.mark.django_db(transaction=True)
async def test_the_supervisor_samples_keeps_and_pushes_each_host_s_usage(embedded_host: Host) -> None:
    async with sampled_by_a_supervisor(embedded_host) as pushed:
        news = await pushed(30)  # the second sample's rates
        samplers_here = [thread.name for thread in threading.enumerate() if thread.name.startswith("usage-")]
    assert (news["type"], news["host_id"]) == ("live.usage", embedded_host.pk)
    assert set(news["rates"][TEST_DOMAIN_UUID]) == {*history.FIGURES, "memory_source", "trend"}
    latest = await database_sync_to_async(HostUsage.objects.get)(host=embedded_host)
    assert abs(latest.taken_at - time.time()) < 5
    assert samplers_here == []  # sampled and collected in the child: this process's interpreter only keeps


def sampling_children() -> list[int]:
    """This process's children running the sampling process (`collectstats --serve`)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            if parent == os.getpid() and b"--serve" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


@pytest.mark.django_db(transaction=True)
async def test_a_sampling_process_that_dies_is_replaced_and_one_that_stops_keeps_its_open_buckets(
        embedded_host: Host) -> None:
    async with sampled_by_a_supervisor(embedded_host) as pushed:
        await pushed(30)
        [first] = sampling_children()
        os.kill(first, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):  # what the killed child sent before it died
            while True:
                await pushed(0.1)
        news = await pushed(30)  # two samples of its successor
        [second] = sampling_children()
    assert news["host_id"] == embedded_host.pk and second != first
    assert sampling_children() == []
    # Its buckets of every resolution were still open (a second of samples): closed at the stop, and kept.
    resolutions = await database_sync_to_async(lambda: set(UsagePoint.objects.filter(
        host=embedded_host, domain_uuid=TEST_DOMAIN_UUID).values_list("resolution", flat=True)))()
    assert resolutions == {resolution.seconds for resolution in history.RESOLUTIONS}


@pytest.mark.django_db(transaction=True)
async def test_the_vm_page_is_pushed_its_own_vm_s_figures_only(embedded_host: Host, operator_user: User) -> None:
    socket = await signed_in_socket(operator_user, f"/ws/domains/{embedded_host.name}/{TEST_DOMAIN_UUID}/")
    figures = dict.fromkeys(history.FIGURES, 12.5) | {"memory_source": "guest"}
    group = live.usage_group(embedded_host.pk)
    await get_channel_layer().group_send(group, live.addressed(group, {
        "type": "live.usage", "host_id": embedded_host.pk, "taken_at": 1_800_000_000.0,
        "rates": {OTHER_UUID: figures | {"cpu_percent": 99.0}, TEST_DOMAIN_UUID: figures}}))
    pushed = await socket.receive_from(5)
    await socket.disconnect()
    assert 'hx-swap-oob="usage:#usage"' in pushed
    assert "1800000000.0" in pushed and "12.5" in pushed and "99.0" not in pushed


@pytest.mark.django_db(transaction=True)
async def test_an_open_page_socket_counts_among_the_open_websockets_until_it_closes(
        embedded_host: Host, operator_user: User) -> None:
    def open_sockets() -> float | None:
        return metrics.REGISTRY.get_sample_value("vmportal_websockets_open")

    before = await database_sync_to_async(open_sockets)()
    socket = await signed_in_socket(operator_user, f"/ws/domains/{embedded_host.name}/{TEST_DOMAIN_UUID}/")
    assert await database_sync_to_async(open_sockets)() == (before or 0) + 1
    await socket.disconnect()
    assert await database_sync_to_async(open_sockets)() == before
