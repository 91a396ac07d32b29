"""Usage collection (domains.virt.usage): bulk samples parsed, and rates from two of them."""

from __future__ import annotations

import dataclasses
import time

import pytest

from domains.virt import usage
from tests.conftest import TEST_DOMAIN_UUID

UUID = "11111111-2222-3333-4444-555555555555"


def stats(cpu_ns: int, *, read: int = 0, written: int = 0, received: int = 0, balloon: bool = True) -> dict:
    """A getAllDomainStats entry as QEMU's driver gives it: two disks, one interface."""
    values = {
        "state.state": 1, "vcpu.current": 2, "cpu.time": cpu_ns,
        "balloon.maximum": 2097152, "balloon.current": 2097152,
        "block.count": 2, "block.0.rd.bytes": read, "block.1.rd.bytes": read, "block.0.wr.bytes": written,
        "block.1.wr.bytes": 0, "block.0.rd.reqs": read // 4096, "block.1.rd.reqs": 0, "block.0.wr.reqs": 0,
        "block.1.wr.reqs": 0,
        "net.count": 1, "net.0.rx.bytes": received, "net.0.tx.bytes": 0, "net.0.rx.pkts": received // 1500,
        "net.0.tx.pkts": 0,
    }
    if balloon:
        values |= {"balloon.available": 2000000, "balloon.unused": 1500000}
    return values


def host(at: float, *entries: tuple[str, dict]) -> usage.HostCounters:
    return usage.HostCounters(monotonic=at, taken_at=1_800_000_000 + at, cpus=8, cpu_busy_ns=0,
                              memory_total_kib=16 << 20, memory_free_kib=8 << 20,
                              domains=tuple(usage.domain_counters(uuid, "vm", values) for uuid, values in entries))


def test_a_domain_s_disks_and_interfaces_are_summed_and_the_guest_s_memory_figures_preferred() -> None:
    counters = usage.domain_counters(UUID.upper(), "vm", stats(5, read=8192, written=100, received=3000))
    assert (counters.uuid, counters.vcpus, counters.cpu_ns) == (UUID, 2, 5)
    assert (counters.disk_read_bytes, counters.disk_write_bytes, counters.disk_read_requests) == (16384, 100, 2)
    assert (counters.net_receive_bytes, counters.net_receive_packets) == (3000, 2)
    assert (counters.memory_used_kib, counters.memory_source) == (500000, "guest")


def test_without_the_balloon_driver_s_figures_memory_is_the_allocation_and_says_so() -> None:
    counters = usage.domain_counters(UUID, "vm", stats(5, balloon=False))
    assert (counters.memory_used_kib, counters.memory_source) == (2097152, "allocation")


def test_rates_come_from_two_samples_per_second_of_the_interval() -> None:
    # One vCPU's worth of time over 10 s on a 2-vCPU VM of an 8-CPU host: 50 % of the VM, 12.5 % of the host.
    first = host(100.0, (UUID, stats(1_000_000_000, read=0, written=0, received=0)))
    second = host(110.0, (UUID, stats(11_000_000_000, read=40960, written=1000, received=15000)))
    [used] = usage.rates(first, second)
    assert used.cpu_percent == pytest.approx(50.0)
    assert used.host_cpu_percent == pytest.approx(12.5)
    assert used.disk_read_bytes_per_second == pytest.approx(8192.0)  # two disks of 40,960 bytes each, over 10 s
    assert used.disk_write_bytes_per_second == pytest.approx(100.0)
    assert used.disk_read_iops == pytest.approx(1.0)
    assert used.net_receive_bytes_per_second == pytest.approx(1500.0)
    assert used.net_receive_packets_per_second == pytest.approx(1.0)


def test_a_counter_that_went_back_gives_a_gap_not_a_wrong_rate() -> None:
    """The guest restarted between the samples (or the watcher did, and a VM came back with new counters)."""
    first = host(100.0, (UUID, stats(50_000_000_000, read=10_000_000)))
    restarted = host(110.0, (UUID, stats(1_000_000_000, read=4096)))
    assert usage.rates(first, restarted) == []


def test_a_vm_in_one_sample_only_has_no_rate_yet() -> None:
    first = host(100.0)
    second = host(110.0, (UUID, stats(1)))
    assert usage.rates(first, second) == []
    assert usage.rates(second, dataclasses.replace(second, monotonic=110.0)) == []  # no time has passed


def test_the_test_driver_is_sampled_in_one_round_with_its_vm() -> None:
    sampled = usage.sample_host("test:///default")
    assert [domain.uuid for domain in sampled.domains] == [TEST_DOMAIN_UUID]
    assert sampled.cpus > 0 and sampled.memory_total_kib > 0


def test_the_sampler_hands_over_a_sample_every_interval_on_its_own_connection() -> None:
    import libvirt

    samples: list[usage.HostCounters] = []
    opened: list[libvirt.virConnect] = []

    def connect() -> libvirt.virConnect:
        opened.append(libvirt.open("test:///default"))
        return opened[-1]

    sampler = usage.UsageSampler(name="embedded", connect=connect, sampled=samples.append, interval=0.05).start()
    deadline = time.monotonic() + 5
    while len(samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert len(samples) >= 3 and len(opened) == 1
    assert samples[0].monotonic < samples[1].monotonic < samples[2].monotonic
    assert not sampler.alive
