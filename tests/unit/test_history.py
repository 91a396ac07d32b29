"""Usage history (domains.history): buckets at three resolutions, averages and maxima, closed as time passes."""

from __future__ import annotations

import pytest

from domains import history
from domains.virt.usage import DomainUsage

UUID = "11111111-2222-3333-4444-555555555555"


def used(cpu: float, uuid: str = UUID) -> DomainUsage:
    return DomainUsage(uuid=uuid, cpu_percent=cpu, host_cpu_percent=cpu / 4, memory_used_kib=1024,
                       memory_source="guest", disk_read_bytes_per_second=0.0, disk_write_bytes_per_second=0.0,
                       disk_read_iops=0.0, disk_write_iops=0.0, net_receive_bytes_per_second=0.0,
                       net_transmit_bytes_per_second=0.0, net_receive_packets_per_second=0.0,
                       net_transmit_packets_per_second=0.0)


def test_a_minute_of_ten_second_rates_is_one_minute_point_with_its_average_and_maximum() -> None:
    sampler = history.Downsampler()
    start = 1_800_000_000 // 1800 * 1800  # a bucket boundary of every resolution
    closed = []
    for step, cpu in enumerate([10.0, 20.0, 30.0, 40.0, 50.0, 90.0, 5.0]):  # the 7th opens the next minute
        closed += sampler.add(start + step * 10, 1, used(cpu))
    ten_seconds = [point for point in closed if point.resolution == 10]
    assert [point.start for point in ten_seconds] == [start + step * 10 for step in range(6)]
    [minute] = [point for point in closed if point.resolution == 60]
    assert (minute.start, minute.samples) == (start, 6)
    assert minute.average["cpu_percent"] == pytest.approx(40.0)
    assert minute.maximum["cpu_percent"] == pytest.approx(90.0)
    assert minute.maximum["host_cpu_percent"] == pytest.approx(22.5)
    assert not [point for point in closed if point.resolution == 1800]  # its half hour is still open


def test_each_vm_has_buckets_of_its_own_and_a_vm_that_goes_closes_its_own() -> None:
    sampler = history.Downsampler()
    other = "99999999-2222-3333-4444-555555555555"
    sampler.add(1_800_000_000, 1, used(10.0))
    sampler.add(1_800_000_000, 1, used(70.0, other))
    points = sampler.forget(1, other)
    assert {point.resolution for point in points} == {10, 60, 1800}
    assert {point.uuid for point in points} == {other}
    assert all(point.average["cpu_percent"] == 70.0 for point in points)
    assert sampler.forget(1, other) == []


def test_what_is_kept_per_vm_is_bounded() -> None:
    assert sum(resolution.points for resolution in history.RESOLUTIONS) == 360 + 1440 + 1440
    assert history.oldest_kept(history.RESOLUTIONS[0], 1_800_003_600) == 1_800_000_000
