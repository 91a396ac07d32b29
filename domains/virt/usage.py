"""What every VM of a host is using: one bulk sample per host, rates from two samples (issue 14's collection).

A sample is one `getAllDomainStats` for every domain at once (as libvirt's Prometheus exporters read a
host), plus the host's own CPU times and memory: never a call per VM. libvirt gives counters (CPU
nanoseconds, bytes and requests since the guest started); `rates` turns two samples into figures per
second. A counter that went down (the guest restarted, a device was unplugged) gives no rate for that
interval rather than a wrong one, and so does a VM that was not in both samples.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import libvirt

from .connections import connection, open_kept_alive, pool
from .readers import HostReader

logger = logging.getLogger(__name__)

# stats groups read in one call (virConnectGetAllDomainStats); the flags leave out nothing.
STATS_GROUPS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
          | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)


@dataclass(frozen=True)
class DomainCounters:
    """One VM's counters at one instant, as libvirt reports them (zero where a group is not reported)."""

    uuid: str
    name: str
    state: int
    vcpus: int
    cpu_ns: int
    memory_max_kib: int
    memory_used_kib: int
    memory_source: str  # "guest" (the balloon driver's figures), or "allocation" (what the VM was given)
    disk_read_bytes: int
    disk_write_bytes: int
    disk_read_requests: int
    disk_write_requests: int
    net_receive_bytes: int
    net_transmit_bytes: int
    net_receive_packets: int
    net_transmit_packets: int


@dataclass(frozen=True)
class HostCounters:
    """A host's sample: its own CPU time and memory, and every VM's counters, read together."""

    monotonic: float  # when it was taken, for rates
    taken_at: float  # the same instant, wall clock, for keeping
    cpus: int
    cpu_busy_ns: int  # the host's CPUs' time not idle (nor waiting for I/O), summed
    memory_total_kib: int
    memory_free_kib: int | None  # None where the driver cannot tell (the test driver)
    domains: tuple[DomainCounters, ...]


@dataclass(frozen=True)
class DomainUsage:
    """One VM's use over an interval between two samples."""

    uuid: str
    cpu_percent: float  # of the VM's own vCPUs (100 = all of them busy)
    host_cpu_percent: float  # of the host's CPUs
    memory_used_kib: int
    memory_source: str
    disk_read_bytes_per_second: float
    disk_write_bytes_per_second: float
    disk_read_iops: float
    disk_write_iops: float
    net_receive_bytes_per_second: float
    net_transmit_bytes_per_second: float
    net_receive_packets_per_second: float
    net_transmit_packets_per_second: float


SampleSink = Callable[[HostCounters], None]


def sample_host(uri: str) -> HostCounters:
    """A sample on a pooled connection (`manage.py collectstats --once`, tests)."""
    with connection(uri) as conn:
        return sample(conn)


def sample(conn: libvirt.virConnect) -> HostCounters:
    """Every VM's counters and the host's, in one round of calls whatever the number of VMs."""
    taken_at, monotonic = time.time(), time.monotonic()
    stats = conn.getAllDomainStats(STATS_GROUPS, 0)
    info = conn.getInfo()  # [model, memory MiB, cpus, ...]
    host_cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
    try:
        memory_free_kib: int | None = int(conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)["free"])
    except libvirt.libvirtError:  # the test driver has none
        memory_free_kib = None
    return HostCounters(
        monotonic=monotonic, taken_at=taken_at, cpus=int(info[2]),
        cpu_busy_ns=int(host_cpu.get("kernel", 0)) + int(host_cpu.get("user", 0)),
        memory_total_kib=int(info[1]) * 1024, memory_free_kib=memory_free_kib,
        domains=tuple(domain_counters(dom.UUIDString(), dom.name(), values) for dom, values in stats),
    )


class UsageSampler(HostReader):
    """Samples one host every `interval` seconds on its own thread and connection, and hands each sample
    to `sampled` (on that thread). A sample that fails is skipped, and the connection opened again for
    the next: the rates then span the gap, or a restarted VM gives none (`rates`)."""

    def __init__(self, *, name: str, connect: Callable[[], libvirt.virConnect],
                 sampled: SampleSink, interval: float) -> None:
        super().__init__(f"usage-{name}")
        self._name = name
        self._connect = connect
        self._sampled = sampled
        self._interval = interval
        self._conn: libvirt.virConnect | None = None

    def _run(self) -> None:
        # Each host on a grid of its own, offset by its name: the hosts of a process take turns through the
        # interval instead of all being collected in one burst (20 hosts of 500 VMs: a second of work).
        next_at = time.monotonic() + zlib.crc32(self._name.encode()) % 1000 / 1000 * self._interval
        while not self._stopping.wait(max(0.0, next_at - time.monotonic())):
            next_at += self._interval  # on a fixed grid: a slow sample does not push the later ones back
            try:
                if self._conn is None:
                    self._conn = self._connect()
                counters = sample(self._conn)
            except libvirt.libvirtError as error:
                logger.info("sampling usage failed: %s", error)
                self._close()
                continue
            self._sampled(counters)
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None


def host_sampler(*, name: str, uri: str, sampled: SampleSink, interval: float) -> UsageSampler:
    """A sampler of `uri` on a connection of its own, with the deployment's keepalive (virt.configure)."""
    return UsageSampler(name=name, connect=lambda: open_kept_alive(uri, pool.keepalive), sampled=sampled,
                        interval=interval)


def domain_counters(uuid: str, name: str, values: Mapping[str, Any]) -> DomainCounters:
    """One domain's entry of getAllDomainStats, summed over its disks and interfaces."""
    maximum = int(values.get("balloon.maximum", 0))
    current = int(values.get("balloon.current", maximum))
    # The balloon driver's own figures, when the guest reports them: what it holds minus what it does not use.
    if "balloon.available" in values and "balloon.unused" in values:
        used, source = int(values["balloon.available"]) - int(values["balloon.unused"]), "guest"
    else:
        used, source = current, "allocation"
    return DomainCounters(
        uuid=uuid.lower(), name=name, state=int(values.get("state.state", 0)), vcpus=int(values.get("vcpu.current", 0)),
        cpu_ns=int(values.get("cpu.time", 0)), memory_max_kib=maximum, memory_used_kib=used, memory_source=source,
        disk_read_bytes=_summed(values, "block", "rd.bytes"), disk_write_bytes=_summed(values, "block", "wr.bytes"),
        disk_read_requests=_summed(values, "block", "rd.reqs"),
        disk_write_requests=_summed(values, "block", "wr.reqs"),
        net_receive_bytes=_summed(values, "net", "rx.bytes"), net_transmit_bytes=_summed(values, "net", "tx.bytes"),
        net_receive_packets=_summed(values, "net", "rx.pkts"),
        net_transmit_packets=_summed(values, "net", "tx.pkts"),
    )


def _summed(values: Mapping[str, Any], group: str, field: str) -> int:
    return sum(int(values.get(f"{group}.{index}.{field}", 0)) for index in range(int(values.get(f"{group}.count", 0))))


_RATES = {  # DomainUsage's per-second field: the DomainCounters field it comes from
    "disk_read_bytes_per_second": "disk_read_bytes", "disk_write_bytes_per_second": "disk_write_bytes",
    "disk_read_iops": "disk_read_requests", "disk_write_iops": "disk_write_requests",
    "net_receive_bytes_per_second": "net_receive_bytes", "net_transmit_bytes_per_second": "net_transmit_bytes",
    "net_receive_packets_per_second": "net_receive_packets",
    "net_transmit_packets_per_second": "net_transmit_packets",
}


def host_rates(previous: HostCounters, current: HostCounters, domains: list[DomainUsage]) -> DomainUsage | None:
    """The host's own use between two samples (uuid ""): its CPUs' busy time, its memory in use (what its
    VMs use where the host does not tell its free memory), and its VMs' disk and network rates summed."""
    seconds = current.monotonic - previous.monotonic
    busy_ns = current.cpu_busy_ns - previous.cpu_busy_ns
    if seconds <= 0 or busy_ns < 0:
        return None
    cpu = busy_ns / (seconds * 1e9) * 100 / current.cpus if current.cpus else 0.0
    if current.memory_free_kib is None:
        memory, source = sum(domain.memory_used_kib for domain in domains), "domains"
    else:
        memory, source = current.memory_total_kib - current.memory_free_kib, "host"
    return DomainUsage(uuid="", cpu_percent=cpu, host_cpu_percent=cpu, memory_used_kib=memory, memory_source=source,
                       **{name: sum(getattr(domain, name) for domain in domains) for name in _RATES})


def rates(previous: HostCounters, current: HostCounters) -> list[DomainUsage]:
    """Each VM in both samples whose counters all went forward: its use per second between them."""
    seconds = current.monotonic - previous.monotonic
    if seconds <= 0:
        return []
    before = {domain.uuid: domain for domain in previous.domains}
    usage = []
    for now in current.domains:
        then = before.get(now.uuid)
        if then is None:
            continue
        deltas = {name: getattr(now, counter) - getattr(then, counter) for name, counter in _RATES.items()}
        cpu_ns = now.cpu_ns - then.cpu_ns
        if cpu_ns < 0 or any(delta < 0 for delta in deltas.values()):  # restarted, or a device went away
            continue
        busy = cpu_ns / (seconds * 1e9) * 100
        usage.append(DomainUsage(
            uuid=now.uuid, cpu_percent=busy / now.vcpus if now.vcpus else 0.0,
            host_cpu_percent=busy / current.cpus if current.cpus else 0.0,
            memory_used_kib=now.memory_used_kib, memory_source=now.memory_source,
            **{name: delta / seconds for name, delta in deltas.items()},
        ))
    return usage
